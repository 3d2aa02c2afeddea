// basinctl: a command-line client for basind, built on the public SDK.
//
// Exit codes: 0 ok, 1 error, 2 usage, 3 empty or full (timed out), 4 closed,
// 5 not found.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "basin/client.h"
#include "basin/publisher.h"
#include "top.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitEmptyOrFull = 3;
constexpr int kExitClosed = 4;
constexpr int kExitNotFound = 5;

constexpr char kUsage[] = R"(usage: basinctl [--addr HOST:PORT] [TLS and token flags] COMMAND [ARGS]

Commands:
  create QUEUE [--max-size N] [--visibility-timeout D] [--max-deliveries N]
               [--dead-letter-queue Q] [--max-bytes N] [--durable]
               [--retry-backoff D,D,...]  waits of a released or expired message
                                          by delivery count (the last repeats)
               [--message-ttl D] [--max-priority N]
  ls                                  list queues
  stat QUEUE [--json]                 settings and counters
  put QUEUE [MSG] [--timeout D]       put MSG, or one message per stdin line
      [--delay D | --at TIME]         ready D from now, or at TIME (RFC 3339, e.g.
                                      2026-12-24T18:00:00Z); at most 30 days ahead
      [--priority N] [--ttl D]        0 to 10, higher first; expires D after the put
      [--group G]                     ordering group: one at a time, in order
  get QUEUE [--timeout D] [--no-ack]  print one payload (acked unless --no-ack;
                                      then the delivery tag goes to stderr)
  done QUEUE TAG                      task_done a delivery
  release QUEUE TAG [--delay D | --reject]
                                      give a delivery back (after D, or the queue's
                                      retry backoff), or send it to the dead-letter
                                      queue now
  join QUEUE [--timeout D]            wait until every message is done
  close QUEUE                         end of stream
  rm QUEUE                            delete a queue
  publish TOPIC [MSG]                 publish MSG, or one message per stdin line
                                      (piped stdin: batched over one stream)
  subscribe TOPIC... [--pattern P]... print "topic<TAB>payload" per message until
                                      interrupted (--pattern may repeat)
  bind TOPIC_OR_PATTERN QUEUE         every publish to the topic also goes to QUEUE
  unbind TOPIC_OR_PATTERN QUEUE
  topics                              topics, their counters, and bindings
  health                              check the broker answers
  info [--json]                       version, uptime, limits and every setting
                                      with where it came from
  top [--interval D] [--iterations N] live view of queues and topics with rates
                                      (redrawn each D, default 1s; Ctrl-C ends)

Connection (each also read from the environment variable named after it):
  --addr HOST:PORT    BASIN_ADDR, default 127.0.0.1:7878
  --tls               BASIN_TLS=1: TLS, trusting the system's CAs unless --ca
  --ca FILE           BASIN_CA: PEM CAs for the broker's certificate (implies --tls)
  --cert FILE         BASIN_CERT: client certificate for mutual TLS (with --key)
  --key FILE          BASIN_KEY: its private key
  --server-name NAME  BASIN_SERVER_NAME: the name the broker's certificate carries
                      when --addr names it otherwise (e.g. by IP)
  --token TOKEN       BASIN_TOKEN: sent as "authorization: Bearer TOKEN"; prefer
                      the variable, which other users cannot see in ps

Durations: 500ms, 5s, 2m, 1h, 7d.
Exit codes: 0 ok, 1 error, 2 usage, 3 empty/full, 4 closed, 5 not found.
)";

struct UsageError {
  std::string what;
};

// Positional arguments and --flags (as --name value or --name=value; a
// repeated flag keeps every value in `repeated`).
struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> flags;
  std::map<std::string, std::vector<std::string>> repeated;

  std::string Flag(const std::string& name, const std::string& fallback = "") const {
    auto it = flags.find(name);
    return it == flags.end() ? fallback : it->second;
  }
  bool Has(const std::string& name) const { return flags.count(name) != 0; }
};

Args Parse(int argc, char** argv) {
  static const std::map<std::string, bool> kTakesValue = {{"addr", true},
                                                          {"max-size", true},
                                                          {"visibility-timeout", true},
                                                          {"max-deliveries", true},
                                                          {"dead-letter-queue", true},
                                                          {"max-bytes", true},
                                                          {"timeout", true},
                                                          {"delay", true},
                                                          {"retry-backoff", true},
                                                          {"message-ttl", true},
                                                          {"max-priority", true},
                                                          {"priority", true},
                                                          {"ttl", true},
                                                          {"group", true},
                                                          {"reject", false},
                                                          {"at", true},
                                                          {"json", false},
                                                          {"durable", false},
                                                          {"no-ack", false},
                                                          {"help", false},
                                                          {"pattern", true},
                                                          {"interval", true},
                                                          {"iterations", true},
                                                          {"tls", false},
                                                          {"ca", true},
                                                          {"cert", true},
                                                          {"key", true},
                                                          {"server-name", true},
                                                          {"token", true}};
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0 || a.size() == 2) {
      args.positional.push_back(a);
      continue;
    }
    std::string name = a.substr(2), value;
    const auto eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    auto known = kTakesValue.find(name);
    if (known == kTakesValue.end()) throw UsageError{"unknown flag --" + name};
    if (known->second && eq == std::string::npos) {
      if (++i >= argc) throw UsageError{"--" + name + " needs a value"};
      value = argv[i];
    }
    args.flags[name] = value;
    args.repeated[name].push_back(value);
  }
  return args;
}

std::chrono::milliseconds ParseDuration(const std::string& text) {
  static const std::vector<std::pair<std::string, double>> kUnits = {
      {"ms", 1}, {"s", 1e3}, {"m", 60e3}, {"h", 3600e3}, {"d", 86400e3}, {"", 1e3}};
  size_t used = 0;
  double value = -1;
  try {
    value = std::stod(text, &used);
  } catch (...) {
  }
  for (const auto& [suffix, ms] : kUnits) {
    if (value >= 0 && text.substr(used) == suffix) {
      return std::chrono::milliseconds(static_cast<int64_t>(value * ms));
    }
  }
  throw UsageError{"bad duration '" + text + "' (use e.g. 500ms, 5s, 2m)"};
}

// RFC 3339: 2026-12-24T18:00:00Z, with optional fractional seconds and a
// numeric offset instead of Z.
std::chrono::system_clock::time_point ParseTime(const std::string& text) {
  const UsageError bad{"bad time '" + text + "' (use RFC 3339, e.g. 2026-12-24T18:00:00Z)"};
  std::tm tm{};
  const char* rest = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (rest == nullptr) throw bad;
  std::chrono::nanoseconds fraction{0};
  if (*rest == '.') {
    int64_t scale = 100'000'000;
    for (++rest; *rest >= '0' && *rest <= '9'; ++rest, scale /= 10) {
      fraction += std::chrono::nanoseconds((*rest - '0') * scale);
    }
  }
  std::chrono::seconds offset{0};
  if (*rest == '+' || *rest == '-') {
    int hours = 0;
    int minutes = 0;
    char tail = 0;
    if (std::sscanf(rest + 1, "%2d:%2d%c", &hours, &minutes, &tail) != 2) throw bad;
    offset = std::chrono::hours(hours) + std::chrono::minutes(minutes);
    if (*rest == '-') offset = -offset;
  } else if ((*rest != 'Z' && *rest != 'z') || rest[1] != '\0') {
    throw bad;
  }
  const time_t utc = timegm(&tm);
  return std::chrono::system_clock::from_time_t(utc) - offset +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(fraction);
}

uint64_t ParseCount(const std::string& text) {
  try {
    size_t used = 0;
    const unsigned long long v = std::stoull(text, &used);
    if (used == text.size() && text[0] != '-') return v;
  } catch (...) {
  }
  throw UsageError{"bad number '" + text + "'"};
}

const std::string& Need(const Args& a, size_t i, const char* what) {
  if (a.positional.size() <= i) throw UsageError{std::string("missing ") + what};
  return a.positional[i];
}

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
      continue;
    }
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

void PrintServerInfo(const basin::ServerInfo& info, bool json) {
  const auto& l = info.limits;
  const std::vector<std::pair<std::string, std::string>> rows = {
      {"version", info.version},
      {"revision", info.revision},
      {"build_type", info.build_type},
      {"uptime_ms", std::to_string(info.uptime.count())},
      {"config_file", info.config_file},
      {"max_message_bytes", std::to_string(l.max_message_bytes)},
      {"max_memory_bytes", std::to_string(l.max_memory_bytes)},
      {"memory_used_bytes", std::to_string(l.memory_used_bytes)},
      {"max_queues", std::to_string(l.max_queues)},
      {"max_waiters_per_queue", std::to_string(l.max_waiters_per_queue)},
      {"max_wait_ms", std::to_string(l.max_wait.count())},
      {"max_batch_messages", std::to_string(l.max_batch_messages)},
      {"max_get_messages", std::to_string(l.max_get_messages)},
      {"max_calls_per_connection", std::to_string(l.max_calls_per_connection)},
      {"user_rate", std::to_string(l.user_rate)},
      {"user_max_queues", std::to_string(l.user_max_queues)},
      {"transport", info.security.transport},
      {"users", std::to_string(info.security.users)},
      {"unauthenticated_total", std::to_string(info.security.unauthenticated_total)},
      {"permission_denied_total", std::to_string(info.security.permission_denied_total)},
      {"rate_limited_total", std::to_string(info.security.rate_limited_total)},
      {"queue_quota_refused_total", std::to_string(info.security.queue_quota_refused_total)},
  };
  if (!json) {
    for (const auto& [k, v] : rows) std::printf("%-26s %s\n", k.c_str(), v.c_str());
    std::printf("\n%-32s %-24s %s\n", "SETTING", "VALUE", "FROM");
    for (const auto& s : info.settings) {
      std::printf("%-32s %-24s %s\n", s.name.c_str(), s.value.empty() ? "-" : s.value.c_str(),
                  s.source.c_str());
    }
    return;
  }
  std::string out = "{";
  for (const auto& [k, v] : rows) {
    const bool text = k == "version" || k == "revision" || k == "build_type" ||
                      k == "config_file" || k == "transport";
    out +=
        (out.size() > 1 ? "," : "") + ("\"" + k + "\":") + (text ? "\"" + JsonEscape(v) + "\"" : v);
  }
  out += ",\"settings\":[";
  for (size_t i = 0; i < info.settings.size(); ++i) {
    const auto& s = info.settings[i];
    out += (i > 0 ? "," : "") +
           ("{\"name\":\"" + JsonEscape(s.name) + "\",\"value\":\"" + JsonEscape(s.value) +
            "\",\"source\":\"" + JsonEscape(s.source) + "\"}");
  }
  std::printf("%s]}\n", out.c_str());
}

void PrintStat(const basin::QueueInfo& q, bool json) {
  const auto& s = q.stats;
  std::string backoff = "[";
  for (const auto& d : q.options.retry_backoff) {
    backoff += (backoff.size() > 1 ? "," : "") + std::to_string(d.count());
  }
  backoff += "]";
  const std::vector<std::pair<std::string, std::string>> rows = {
      {"name", q.name},
      {"max_size", std::to_string(q.options.max_size)},
      {"max_bytes", std::to_string(q.options.max_bytes)},
      {"visibility_timeout_ms", std::to_string(q.options.visibility_timeout.count())},
      {"max_deliveries", std::to_string(q.options.max_deliveries)},
      {"dead_letter_queue", q.options.dead_letter_queue},
      {"durable", q.options.durable ? "true" : "false"},
      {"retry_backoff_ms", backoff},
      {"message_ttl_ms", std::to_string(q.options.message_ttl.count())},
      {"max_priority", std::to_string(q.options.max_priority)},
      {"size", std::to_string(s.size)},
      {"bytes", std::to_string(s.bytes)},
      {"full", s.full ? "true" : "false"},
      {"empty", s.empty ? "true" : "false"},
      {"unfinished", std::to_string(s.unfinished)},
      {"in_flight", std::to_string(s.in_flight)},
      {"delayed", std::to_string(s.delayed)},
      {"waiting_getters", std::to_string(s.waiting_getters)},
      {"waiting_putters", std::to_string(s.waiting_putters)},
      {"waiting_joiners", std::to_string(s.waiting_joiners)},
      {"total_put", std::to_string(s.total_put)},
      {"total_delivered", std::to_string(s.total_delivered)},
      {"total_done", std::to_string(s.total_done)},
      {"total_redelivered", std::to_string(s.total_redelivered)},
      {"total_dead_lettered", std::to_string(s.total_dead_lettered)},
      {"total_expired", std::to_string(s.total_expired)},
      {"groups", std::to_string(s.groups)},
      {"active_groups", std::to_string(s.active_groups)},
      {"closed", s.closed ? "true" : "false"},
  };
  if (!json) {
    for (const auto& [k, v] : rows) std::printf("%-26s %s\n", k.c_str(), v.c_str());
    return;
  }
  std::string out = "{";
  for (const auto& [k, v] : rows) {
    const bool quoted = k == "name" || k == "dead_letter_queue";
    out += (out.size() > 1 ? "," : "") + ("\"" + k + "\":") +
           (quoted ? "\"" + JsonEscape(v) + "\"" : v);
  }
  std::printf("%s}\n", out.c_str());
}

int ExitCode(const basin::Error& e) {
  if (dynamic_cast<const basin::Empty*>(&e) || dynamic_cast<const basin::Full*>(&e)) {
    return kExitEmptyOrFull;
  }
  if (dynamic_cast<const basin::Closed*>(&e)) return kExitClosed;
  if (dynamic_cast<const basin::NotFound*>(&e)) return kExitNotFound;
  return kExitError;
}

int Run(const Args& a) {
  const std::string& cmd = Need(a, 0, "command");
  // A flag wins over its environment variable.
  auto setting = [&a](const char* flag, const char* env, const char* fallback = "") {
    const char* value = std::getenv(env);
    return a.Flag(flag, value != nullptr ? value : fallback);
  };
  const std::string address = setting("addr", "BASIN_ADDR", "127.0.0.1:7878");
  basin::ClientOptions options;
  const std::string tls_env = setting("tls", "BASIN_TLS");
  options.tls.enabled = a.Has("tls") || (tls_env != "" && tls_env != "0" && tls_env != "false");
  options.tls.ca_file = setting("ca", "BASIN_CA");
  options.tls.cert_file = setting("cert", "BASIN_CERT");
  options.tls.key_file = setting("key", "BASIN_KEY");
  options.tls.server_name = setting("server-name", "BASIN_SERVER_NAME");
  options.token = setting("token", "BASIN_TOKEN");
  basin::Client client(address, options);
  const bool timed = a.Has("timeout");
  const auto timeout = timed ? ParseDuration(a.Flag("timeout")) : std::chrono::milliseconds(0);

  if (cmd == "create") {
    basin::QueueOptions o;
    o.max_size = ParseCount(a.Flag("max-size", "0"));
    if (a.Has("visibility-timeout"))
      o.visibility_timeout = ParseDuration(a.Flag("visibility-timeout"));
    o.max_deliveries = static_cast<uint32_t>(ParseCount(a.Flag("max-deliveries", "0")));
    o.dead_letter_queue = a.Flag("dead-letter-queue");
    o.max_bytes = ParseCount(a.Flag("max-bytes", "0"));
    o.durable = a.Has("durable");
    if (a.Has("message-ttl")) o.message_ttl = ParseDuration(a.Flag("message-ttl"));
    o.max_priority = static_cast<uint32_t>(ParseCount(a.Flag("max-priority", "0")));
    if (a.Has("retry-backoff")) {
      const std::string list = a.Flag("retry-backoff");
      for (size_t at = 0; at <= list.size();) {
        const size_t comma = std::min(list.find(',', at), list.size());
        o.retry_backoff.push_back(ParseDuration(list.substr(at, comma - at)));
        at = comma + 1;
      }
    }
    client.queue(Need(a, 1, "QUEUE"), o);
  } else if (cmd == "ls") {
    std::printf("%-32s %10s %10s %10s %10s %s\n", "NAME", "SIZE", "MAX_SIZE", "IN_FLIGHT",
                "UNFINISHED", "CLOSED");
    for (const auto& q : client.list_queues()) {
      std::printf("%-32s %10llu %10llu %10llu %10llu %s\n", q.name.c_str(),
                  static_cast<unsigned long long>(q.stats.size),
                  static_cast<unsigned long long>(q.options.max_size),
                  static_cast<unsigned long long>(q.stats.in_flight),
                  static_cast<unsigned long long>(q.stats.unfinished),
                  q.stats.closed ? "yes" : "no");
    }
  } else if (cmd == "stat") {
    PrintStat(client.queue_info(Need(a, 1, "QUEUE")), a.Has("json"));
  } else if (cmd == "put") {
    auto q = client.queue(Need(a, 1, "QUEUE"));
    if (a.Has("delay") && a.Has("at")) throw UsageError{"--delay and --at: give one"};
    basin::OutgoingMessage schedule;
    if (a.Has("delay")) schedule.delay = ParseDuration(a.Flag("delay"));
    if (a.Has("at")) schedule.deliver_at = ParseTime(a.Flag("at"));
    schedule.priority = static_cast<uint32_t>(ParseCount(a.Flag("priority", "0")));
    if (a.Has("ttl")) schedule.ttl = ParseDuration(a.Flag("ttl"));
    schedule.group = a.Flag("group");
    auto put = [&](const std::string& msg) {
      basin::OutgoingMessage m = schedule;
      m.payload = msg;
      timed ? q.put(m, timeout) : q.put(m);
    };
    if (a.positional.size() > 2) {
      put(a.positional[2]);
    } else {
      for (std::string line; std::getline(std::cin, line);) put(line);
    }
  } else if (cmd == "get") {
    auto q = client.queue(Need(a, 1, "QUEUE"));
    basin::Message m = timed ? q.get(timeout) : q.get();
    std::fwrite(m.payload().data(), 1, m.payload().size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    if (a.Has("no-ack")) {
      std::fprintf(stderr, "%s\n", m.delivery_tag().c_str());
    } else {
      q.task_done(m);
    }
  } else if (cmd == "release") {
    auto q = client.queue(Need(a, 1, "QUEUE"));
    const std::string& tag = Need(a, 2, "TAG");
    if (a.Has("reject") && a.Has("delay")) throw UsageError{"--delay and --reject: give one"};
    if (a.Has("reject")) {
      q.reject(tag);
    } else if (a.Has("delay")) {
      q.release(tag, ParseDuration(a.Flag("delay")));
    } else {
      q.release(tag);
    }
  } else if (cmd == "done") {
    auto q = client.queue(Need(a, 1, "QUEUE"));
    const std::string& tag = Need(a, 2, "TAG");
    q.task_done(tag);
  } else if (cmd == "join") {
    auto q = client.queue(Need(a, 1, "QUEUE"));
    timed ? q.join(timeout) : q.join();
  } else if (cmd == "close") {
    client.queue(Need(a, 1, "QUEUE")).close();
  } else if (cmd == "rm") {
    std::printf("dropped %llu messages\n",
                static_cast<unsigned long long>(client.delete_queue(Need(a, 1, "QUEUE"))));
  } else if (cmd == "publish") {
    const std::string& topic = Need(a, 1, "TOPIC");
    auto publish = [&](const std::string& msg) {
      const basin::PublishResult r = client.publish(topic, msg);
      for (const auto& q : r.undelivered_queues) {
        std::fprintf(stderr, "basinctl: bound queue '%s' refused the message\n", q.c_str());
      }
    };
    if (a.positional.size() > 2) {
      publish(a.positional[2]);
    } else if (isatty(STDIN_FILENO)) {
      // As the seed's interactive publisher: one message per line, each
      // answered before the next is read.
      for (std::string line; std::getline(std::cin, line);) publish(line);
    } else {
      // Piped: batched over one PublishStream, confirmed every 10,000 lines
      // (a stream error stops it there) and at the end.
      basin::Publisher publisher(client);
      uint64_t failed = 0;
      auto confirm = [&] {
        const basin::PublishSummary s = publisher.flush();
        failed += s.failed;
        if (s.failures_unlisted > 0) {
          std::fprintf(stderr, "basinctl: %llu more messages failed or were refused by a queue\n",
                       static_cast<unsigned long long>(s.failures_unlisted));
        }
        for (const basin::PublishFailure& f : s.failures) {
          if (!f.error_reason.empty()) {
            std::fprintf(stderr, "basinctl: a message was not published: %s\n",
                         f.error_message.c_str());
          }
          for (const auto& q : f.undelivered_queues) {
            std::fprintf(stderr, "basinctl: bound queue '%s' refused a message\n", q.c_str());
          }
        }
      };
      size_t lines = 0;
      for (std::string line; std::getline(std::cin, line);) {
        publisher.publish(topic, line);
        if (++lines % 10'000 == 0) confirm();
      }
      confirm();
      if (failed > 0) return kExitError;
    }
  } else if (cmd == "subscribe") {
    std::vector<std::string> topics(a.positional.begin() + 1, a.positional.end());
    basin::SubscribeOptions o;
    if (auto it = a.repeated.find("pattern"); it != a.repeated.end()) o.patterns = it->second;
    if (topics.empty() && o.patterns.empty()) throw UsageError{"missing TOPIC or --pattern"};
    auto sub = client.subscribe(topics, o);
    for (const basin::TopicMessage& m : sub) {
      if (m.dropped_before > 0) {
        std::fprintf(stderr, "basinctl: %llu messages dropped (too slow)\n",
                     static_cast<unsigned long long>(m.dropped_before));
      }
      std::printf("%s\t%.*s\n", m.topic.c_str(), static_cast<int>(m.payload.size()),
                  m.payload.data());
      std::fflush(stdout);
    }
  } else if (cmd == "bind") {
    client.bind_queue(Need(a, 1, "TOPIC_OR_PATTERN"), Need(a, 2, "QUEUE"));
  } else if (cmd == "unbind") {
    client.unbind_queue(Need(a, 1, "TOPIC_OR_PATTERN"), Need(a, 2, "QUEUE"));
  } else if (cmd == "topics") {
    const basin::TopicsInfo info = client.list_topics();
    std::printf("%-32s %11s %10s %10s %10s %10s\n", "TOPIC", "SUBSCRIBERS", "PUBLISHED",
                "DELIVERED", "DROPPED", "ROUTED");
    for (const auto& t : info.topics) {
      std::printf("%-32s %11llu %10llu %10llu %10llu %10llu\n", t.name.c_str(),
                  static_cast<unsigned long long>(t.subscribers),
                  static_cast<unsigned long long>(t.published),
                  static_cast<unsigned long long>(t.delivered),
                  static_cast<unsigned long long>(t.dropped),
                  static_cast<unsigned long long>(t.routed));
    }
    for (const auto& b : info.bindings) {
      std::printf("binding %s -> %s\n", b.topic_pattern.c_str(), b.queue.c_str());
    }
  } else if (cmd == "top") {
    const auto interval = ParseDuration(a.Flag("interval", "1s"));
    if (interval.count() <= 0) throw UsageError{"--interval must be positive"};
    const uint64_t iterations = a.Has("iterations") ? ParseCount(a.Flag("iterations")) : 0;
    if (iterations > 1'000'000) throw UsageError{"--iterations is at most 1000000"};
    return basinctl::RunTop(client, address, interval, static_cast<int>(iterations));
  } else if (cmd == "info") {
    PrintServerInfo(client.server_info(), a.Has("json"));
  } else if (cmd == "health") {
    if (!client.healthy()) {
      std::fprintf(stderr, "basinctl: broker is not serving\n");
      return kExitError;
    }
    std::printf("SERVING\n");
  } else {
    throw UsageError{"unknown command '" + cmd + "'"};
  }
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args args = Parse(argc, argv);
    if (args.Has("help") || args.positional.empty()) {
      std::fputs(kUsage, args.Has("help") ? stdout : stderr);
      return args.Has("help") ? kExitOk : kExitUsage;
    }
    return Run(args);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "basinctl: %s\n\n%s", e.what.c_str(), kUsage);
    return kExitUsage;
  } catch (const basin::Error& e) {
    const int code = ExitCode(e);
    if (code == kExitError) {
      std::fprintf(stderr, "basinctl: %s (%s)\n", e.what(),
                   e.reason().empty() ? "no reason" : e.reason().c_str());
    } else {
      std::fprintf(stderr, "basinctl: %s\n", e.what());
    }
    return code;
  }
}
