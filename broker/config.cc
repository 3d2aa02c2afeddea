#include "broker/config.h"

#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cctype>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <utility>

#include "broker/storage/committer.h"

namespace basin {
namespace po = boost::program_options;

std::optional<std::chrono::nanoseconds> ParseDuration(const std::string& text) {
  size_t pos = 0;
  double value = 0;
  try {
    value = std::stod(text, &pos);
  } catch (...) {
    return std::nullopt;
  }
  if (value < 0) return std::nullopt;
  const std::string unit = text.substr(pos);
  double scale = 0;
  if (unit.empty() || unit == "s") {
    scale = 1e9;
  } else if (unit == "ms") {
    scale = 1e6;
  } else if (unit == "us") {
    scale = 1e3;
  } else if (unit == "m") {
    scale = 60e9;
  } else if (unit == "h") {
    scale = 3600e9;
  } else {
    return std::nullopt;
  }
  return std::chrono::nanoseconds(static_cast<int64_t>(value * scale));
}

std::optional<uint64_t> ParseBytes(const std::string& text) {
  size_t pos = 0;
  unsigned long long value = 0;
  try {
    value = std::stoull(text, &pos);
  } catch (...) {
    return std::nullopt;
  }
  std::string unit = text.substr(pos);
  std::transform(unit.begin(), unit.end(), unit.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  uint64_t scale = 0;
  if (unit.empty() || unit == "B") {
    scale = 1;
  } else if (unit == "K" || unit == "KB" || unit == "KIB") {
    scale = uint64_t{1} << 10;
  } else if (unit == "M" || unit == "MB" || unit == "MIB") {
    scale = uint64_t{1} << 20;
  } else if (unit == "G" || unit == "GB" || unit == "GIB") {
    scale = uint64_t{1} << 30;
  } else {
    return std::nullopt;
  }
  return value * scale;
}

uint64_t DefaultMaxMemory() {
  uint64_t total = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                   static_cast<uint64_t>(sysconf(_SC_PAGE_SIZE));
  // cgroup v2, then v1. "max" or an absurdly large v1 value means no limit.
  for (const char* path :
       {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream in(path);
    unsigned long long limit = 0;
    if (in >> limit && limit > 0 && limit < total) total = limit;
  }
  return total / 2;
}

namespace {

// The least --max-memory accepted. A few bytes (a unit left off) would start
// a broker that can hold nothing: a quarter goes to pub/sub, where a single
// subscription to a 32-word pattern costs some 14 KiB, and queues get the
// rest (at 1 byte: a 1-byte share and no room for queues at all). 1 MiB is
// still small, but a broker that works, if barely.
constexpr uint64_t kMinMaxMemory = uint64_t{1} << 20;

// BASIN_MAX_MESSAGE_BYTES -> max-message-bytes, for every known flag.
std::string EnvToFlag(const po::options_description& desc, const std::string& env) {
  const std::string prefix = "BASIN_";
  if (env.rfind(prefix, 0) != 0) return {};
  std::string name = env.substr(prefix.size());
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) {
    return c == '_' ? '-' : static_cast<char>(std::tolower(c));
  });
  return desc.find_nothrow(name, false) != nullptr ? name : std::string();
}

}  // namespace

std::optional<Config> ParseConfig(int argc, char** argv, int* exit_code) {
  Config c;
  std::string max_message_bytes = "1MiB";
  std::string max_memory;
  std::string max_wait = "60s";
  std::string keepalive_time = "30s";
  std::string keepalive_timeout = "10s";
  std::string default_visibility = "30s";
  std::string max_lease = "12h";
  size_t max_waiters = c.limits.max_waiters_per_queue;
  size_t max_sub_messages = c.limits.max_subscriber_buffer_messages;
  std::string max_sub_bytes = "256MiB";
  core::TopicCaps& caps = c.limits.topic_caps;
  std::string max_sub_memory;
  std::string fsync_interval = "5ms";
  std::string segment_bytes = "64MiB";

  po::options_description desc(
      "basind: the Basin message broker\n\nOptions (each also read from BASIN_<NAME>, e.g. "
      "BASIN_LISTEN)");
  desc.add_options()("help,h", "print this help")(
      "listen", po::value(&c.listen)->default_value(c.listen),
      "address to serve gRPC on; port 0 picks a free port")(
      "max-message-bytes", po::value(&max_message_bytes)->default_value(max_message_bytes),
      "largest message (payload + headers)")(
      "max-memory", po::value(&max_memory),
      "bytes the broker holds; queues get it less --max-subscriber-memory before puts wait; at "
      "least 1MiB, and queues' part at least --max-message-bytes (default: half of RAM or "
      "cgroup limit)")("max-wait", po::value(&max_wait)->default_value(max_wait),
                       "longest one blocking call waits; clients re-issue")(
      "max-queues", po::value(&c.limits.max_queues)->default_value(c.limits.max_queues),
      "queues in the broker, dead-letter queues included, before TOO_MANY_QUEUES")(
      "max-waiters-per-queue", po::value(&max_waiters)->default_value(max_waiters),
      "blocked calls one queue accepts before TOO_MANY_WAITERS")(
      "default-visibility-timeout",
      po::value(&default_visibility)->default_value(default_visibility),
      "lease length for queues created without one")(
      "max-lease", po::value(&max_lease)->default_value(max_lease),
      "longest lease a visibility timeout or extension may grant")(
      "max-subscriber-buffer-messages",
      po::value(&max_sub_messages)->default_value(max_sub_messages),
      "largest buffer (messages) a subscription may ask for")(
      "max-subscriber-buffer-bytes", po::value(&max_sub_bytes)->default_value(max_sub_bytes),
      "largest buffer (bytes) a subscription may ask for")(
      "max-subscriptions",
      po::value(&caps.max_subscriptions)->default_value(caps.max_subscriptions),
      "live subscriptions in the broker before TOO_MANY_SUBSCRIPTIONS")(
      "max-subscriptions-per-connection",
      po::value(&caps.max_subscriptions_per_connection)
          ->default_value(caps.max_subscriptions_per_connection),
      "live subscriptions one client connection may hold before TOO_MANY_SUBSCRIPTIONS")(
      "max-subscription-terms",
      po::value(&caps.max_subscription_terms)->default_value(caps.max_subscription_terms),
      "topics plus patterns one subscription may name")(
      "max-bindings", po::value(&caps.max_bindings)->default_value(caps.max_bindings),
      "topic-to-queue bindings in the broker before TOO_MANY_BINDINGS")(
      "max-tracked-topics",
      po::value(&caps.max_tracked_topics)->default_value(caps.max_tracked_topics),
      "topics whose counters ListTopics keeps; past it new topics are not counted")(
      "max-pattern-nodes",
      po::value(&caps.max_pattern_nodes)->default_value(caps.max_pattern_nodes),
      "nodes of the pattern index (subscription patterns and bindings) before "
      "TOO_MANY_PATTERN_NODES; a publish visits at most 32 times this many")(
      "max-subscriber-memory", po::value(&max_sub_memory),
      "part of --max-memory set aside for pub/sub: subscriber buffers, subscriptions, bindings "
      "and the pattern index; queues get the rest (default: a quarter of it)")(
      "data-dir", po::value(&c.data_dir),
      "directory for durable queues (default: none; durable queues are refused)")(
      "fsync", po::value(&c.fsync)->default_value(c.fsync),
      "when a durable put is synced to disk: always|batch|never")(
      "fsync-interval", po::value(&fsync_interval)->default_value(fsync_interval),
      "with --fsync batch, the longest a put waits for the sync it shares")(
      "segment-bytes", po::value(&segment_bytes)->default_value(segment_bytes),
      "size of a durable queue's log segment files")(
      "keepalive-time", po::value(&keepalive_time)->default_value(keepalive_time),
      "interval of keepalive pings to clients")(
      "keepalive-timeout", po::value(&keepalive_timeout)->default_value(keepalive_timeout),
      "a client that does not answer a ping within this is dropped")(
      "http-listen", po::value(&c.http_listen),
      "address for /metrics and the dashboard, e.g. 127.0.0.1:9464 (default: none, off)")(
      "http-admin", po::bool_switch(&c.http_admin),
      "let the dashboard close and delete queues (default: read-only)")(
      "metrics-max-queues", po::value(&c.metrics_max_queues)->default_value(c.metrics_max_queues),
      "queues with series of their own in /metrics and the dashboard; the rest are summed as "
      "queue=\"(other)\"")(
      "metrics-max-topics", po::value(&c.metrics_max_topics)->default_value(c.metrics_max_topics),
      "topics with series of their own; the rest are summed as topic=\"(other)\"")(
      "log-level", po::value(&c.log_level)->default_value(c.log_level),
      "trace|debug|info|warn|error|off")(
      "log-format", po::value(&c.log_format)->default_value(c.log_format), "text|json");

  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::store(po::parse_environment(
                  desc, [&desc](const std::string& env) { return EnvToFlag(desc, env); }),
              vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "basind: " << e.what() << "\n";
    *exit_code = 2;
    return std::nullopt;
  }
  if (vm.count("help") != 0) {
    std::cout << desc << "\n";
    *exit_code = 0;
    return std::nullopt;
  }

  auto fail = [exit_code](const std::string& flag, const std::string& value,
                          const std::string& why = "") {
    std::cerr << "basind: invalid value '" << value << "' for --" << flag
              << (why.empty() ? "" : ": " + why) << "\n";
    *exit_code = 2;
    return std::nullopt;
  };
  const auto bytes = ParseBytes(max_message_bytes);
  if (!bytes || *bytes == 0 || *bytes > (uint64_t{1} << 30)) {
    return fail("max-message-bytes", max_message_bytes);
  }
  c.limits.max_message_bytes = *bytes;
  if (max_memory.empty()) {
    c.limits.max_memory = DefaultMaxMemory();
  } else if (auto m = ParseBytes(max_memory); m && *m >= kMinMaxMemory) {
    c.limits.max_memory = *m;
  } else {
    return fail("max-memory", max_memory, "at least 1MiB");
  }
  c.limits.max_waiters_per_queue = max_waiters;
  const auto sub_bytes = ParseBytes(max_sub_bytes);
  if (!sub_bytes || *sub_bytes == 0) return fail("max-subscriber-buffer-bytes", max_sub_bytes);
  if (max_sub_messages == 0) {
    return fail("max-subscriber-buffer-messages", std::to_string(max_sub_messages));
  }
  c.limits.max_subscriber_buffer_messages = max_sub_messages;
  for (const auto& [flag, value] : std::initializer_list<std::pair<const char*, size_t>>{
           {"max-queues", c.limits.max_queues},
           {"max-subscriptions", caps.max_subscriptions},
           {"max-subscriptions-per-connection", caps.max_subscriptions_per_connection},
           {"max-subscription-terms", caps.max_subscription_terms},
           {"max-bindings", caps.max_bindings},
           {"max-tracked-topics", caps.max_tracked_topics},
           {"max-pattern-nodes", caps.max_pattern_nodes}}) {
    // Each bounds what one client can make the broker keep: zero would refuse
    // everything, and anything above 2^32 is no bound at all.
    if (value == 0 || value > (size_t{1} << 32)) return fail(flag, std::to_string(value));
  }
  if (max_sub_memory.empty()) {
    caps.max_subscriber_memory = c.limits.max_memory / 4;
  } else if (auto m = ParseBytes(max_sub_memory); m && *m > 0 && *m < c.limits.max_memory) {
    // Set aside from --max-memory: all of it would leave queues nothing.
    caps.max_subscriber_memory = *m;
  } else {
    return fail("max-subscriber-memory", max_sub_memory);
  }
  // Queues get --max-memory less the share: a message that fits nowhere there
  // would wait for good.
  if (c.limits.max_memory - caps.max_subscriber_memory < c.limits.max_message_bytes) {
    std::cerr << "basind: --max-memory less --max-subscriber-memory ("
              << c.limits.max_memory - caps.max_subscriber_memory
              << " bytes) is below --max-message-bytes (" << c.limits.max_message_bytes << ")\n";
    *exit_code = 2;
    return std::nullopt;
  }
  c.limits.max_subscriber_buffer_bytes = *sub_bytes;
  c.limits.default_subscriber_buffer_messages =
      std::min(c.limits.default_subscriber_buffer_messages, max_sub_messages);
  c.limits.default_subscriber_buffer_bytes =
      std::min(c.limits.default_subscriber_buffer_bytes, *sub_bytes);
  struct DurationFlag {
    const char* name;
    const std::string& text;
    core::Duration* out;
  };
  core::Duration ka_time{}, ka_timeout{};
  for (const DurationFlag& f :
       {DurationFlag{"max-wait", max_wait, &c.limits.max_wait},
        DurationFlag{"default-visibility-timeout", default_visibility,
                     &c.limits.default_visibility_timeout},
        DurationFlag{"max-lease", max_lease, &c.limits.max_lease},
        DurationFlag{"keepalive-time", keepalive_time, &ka_time},
        DurationFlag{"keepalive-timeout", keepalive_timeout, &ka_timeout}}) {
    const auto d = ParseDuration(f.text);
    if (!d || *d <= std::chrono::nanoseconds::zero()) return fail(f.name, f.text);
    *f.out = std::chrono::duration_cast<core::Duration>(*d);
  }
  c.keepalive_time = std::chrono::duration_cast<std::chrono::milliseconds>(ka_time);
  c.keepalive_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(ka_timeout);
  if (c.log_format != "text" && c.log_format != "json") return fail("log-format", c.log_format);
  if (!storage::ParseFsyncPolicy(c.fsync)) return fail("fsync", c.fsync);
  const auto interval = ParseDuration(fsync_interval);
  if (!interval || *interval > std::chrono::seconds(10))
    return fail("fsync-interval", fsync_interval);
  c.fsync_interval = std::chrono::duration_cast<std::chrono::microseconds>(*interval);
  const auto segment = ParseBytes(segment_bytes);
  if (!segment || *segment < (64u << 10) || *segment > (uint64_t{4} << 30)) {
    return fail("segment-bytes", segment_bytes);
  }
  c.segment_bytes = *segment;
  return c;
}

}  // namespace basin
