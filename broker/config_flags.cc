#include "broker/config_flags.h"

#include <algorithm>
#include <cctype>
#include <limits>
#include <sstream>

#include "broker/storage/committer.h"

namespace basin::config {
namespace {

// Values every count-like limit must stay within: zero would refuse
// everything, and anything above 2^32 is no bound at all.
constexpr uint64_t kMaxLimit = uint64_t{1} << 32;

std::optional<uint64_t> ParseCount(const std::string& text) {
  if (text.empty() || text.size() > 19 ||
      !std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); })) {
    return std::nullopt;
  }
  return std::stoull(text);
}

// A count in [min, kMaxLimit] into *out.
template <typename T>
std::string Count(const std::string& text, T* out, uint64_t min = 1) {
  const auto n = ParseCount(text);
  if (!n) return "not a whole number";
  if (*n < min || *n > kMaxLimit) {
    return "use " + std::to_string(min) + " to " + std::to_string(kMaxLimit);
  }
  *out = static_cast<T>(*n);
  return "";
}

std::string Bytes(const std::string& text, uint64_t* out, uint64_t min, uint64_t max) {
  const auto n = ParseBytes(text);
  if (!n) return "not a size (e.g. 1048576, 64KiB, 1MiB, 2GiB)";
  if (*n < min || *n > max) {
    return "use " + std::to_string(min) + " to " + std::to_string(max) + " bytes";
  }
  *out = *n;
  return "";
}

template <typename D>
std::string Dur(const std::string& text, D* out, std::chrono::nanoseconds min,
                std::chrono::nanoseconds max = std::chrono::hours(24 * 365)) {
  const auto d = ParseDuration(text);
  if (!d) return "not a duration (e.g. 500ms, 30s, 2m, 1h)";
  if (*d < min || *d > max) return "out of range";
  *out = std::chrono::duration_cast<D>(*d);
  return "";
}

std::string NonEmpty(const std::string& text, std::string* out) {
  if (text.empty()) return "must not be empty";
  *out = text;
  return "";
}

std::string Address(const std::string& text, std::string* out) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size()) return "not host:port";
  const std::string port = text.substr(colon + 1);
  const auto n = ParseCount(port);
  if (!n || *n > 65535) return "not host:port (the port is 0 to 65535)";
  *out = text;
  return "";
}

std::string Bool(const std::string& text, bool* out) {
  if (text == "true" || text == "1" || text == "yes") {
    *out = true;
  } else if (text == "false" || text == "0" || text == "no") {
    *out = false;
  } else {
    return "use true or false";
  }
  return "";
}

constexpr auto ns = std::chrono::nanoseconds(1);

const std::vector<Flag> kFlags = {
    {"listen", Kind::kAddress, "127.0.0.1:7878",
     "address to serve gRPC on; port 0 picks a free port",
     [](Config& c, const std::string& t) { return Address(t, &c.listen); }},
    {"tls-cert", Kind::kPath, "",
     "PEM certificate chain to serve gRPC over TLS; re-read on SIGHUP (default: none, plaintext)",
     [](Config& c, const std::string& t) { return NonEmpty(t, &c.tls_cert); }},
    {"tls-key", Kind::kPath, "", "PEM private key of --tls-cert; re-read on SIGHUP",
     [](Config& c, const std::string& t) { return NonEmpty(t, &c.tls_key); }},
    {"tls-client-ca", Kind::kPath, "",
     "PEM CA certificates that sign client certificates, for mutual TLS; re-read on SIGHUP",
     [](Config& c, const std::string& t) { return NonEmpty(t, &c.tls_client_ca); }},
    {"tls-client-auth", Kind::kChoice, "",
     "client certificates: none|request|require (default: require with --tls-client-ca, else "
     "none); a certificate that is sent must verify",
     [](Config& c, const std::string& t) -> std::string {
       if (t != "none" && t != "request" && t != "require") return "use none, request or require";
       c.tls_client_auth = t;
       return "";
     }},
    {"allow-insecure", Kind::kBool, "false",
     "serve plaintext gRPC on an address other than loopback, or without users, and --http-admin "
     "off loopback (tokens and messages then cross the network readable)",
     [](Config& c, const std::string& t) { return Bool(t, &c.allow_insecure); }},
    {"users", Kind::kPath, "",
     "TOML file of [[users]] with tokens and permissions, re-read on SIGHUP (default: the "
     "[[users]] of --config; none: no authentication)",
     [](Config& c, const std::string& t) { return NonEmpty(t, &c.users_file); }},
    {"user-rate", Kind::kCount, "0",
     "messages per second one user may put, produce and publish, past which calls get "
     "RATE_LIMITED; a user's own rate wins (0: no limit)",
     [](Config& c, const std::string& t) { return Count(t, &c.user_rate, 0); }},
    {"user-max-queues", Kind::kCount, "0",
     "queues one user may have created at a time before TOO_MANY_QUEUES; a user's own max_queues "
     "wins (0: no limit)",
     [](Config& c, const std::string& t) { return Count(t, &c.user_max_queues, 0); }},
    {"max-calls-per-connection", Kind::kCount, "10000",
     "calls (streams, blocked and running unary calls) one client connection may have open; "
     "the client's further calls wait in the client for a free slot",
     [](Config& c, const std::string& t) -> std::string {
       // gRPC takes it as an int.
       std::string why = Count(t, &c.max_calls_per_connection, 1);
       if (why.empty() && c.max_calls_per_connection > 1'000'000) why = "use 1 to 1000000";
       return why;
     }},
    {"max-connection-idle", Kind::kDuration, "0s",
     "close a client connection without calls for this long (clients reconnect when they next "
     "call; 0s: never)",
     [](Config& c, const std::string& t) {
       return Dur(t, &c.max_connection_idle, std::chrono::nanoseconds(0), std::chrono::hours(24));
     }},
    {"max-connection-age", Kind::kDuration, "0s",
     "ask a client connection to reconnect after this long, so that load rebalances "
     "(up to 24 days; 0s: never)",
     [](Config& c, const std::string& t) {
       return Dur(t, &c.max_connection_age, std::chrono::nanoseconds(0),
                  std::chrono::hours(24 * 24));
     }},
    {"max-connection-age-grace", Kind::kDuration, "0s",
     "after --max-connection-age, how long calls still open may run before the connection is cut "
     "(0s: no limit)",
     [](Config& c, const std::string& t) {
       return Dur(t, &c.max_connection_age_grace, std::chrono::nanoseconds(0),
                  std::chrono::hours(24 * 24));
     }},
    {"max-message-bytes", Kind::kBytes, "1MiB", "largest message (payload + headers), up to 1GiB",
     [](Config& c, const std::string& t) {
       return Bytes(t, &c.limits.max_message_bytes, 1, uint64_t{1} << 30);
     }},
    {"max-memory", Kind::kBytes, "",
     "bytes the broker holds; queues get it less --max-subscriber-memory before puts wait; at "
     "least 1MiB, and queues' part at least --max-message-bytes (default: half of RAM or of the "
     "cgroup's limit)",
     [](Config& c, const std::string& t) -> std::string {
       // A few bytes (a unit left off) would start a broker that can hold
       // nothing: a quarter goes to pub/sub, where one subscription to a
       // 32-word pattern costs some 14 KiB. 1 MiB is small, but it works.
       const auto n = ParseBytes(t);
       if (!n || *n < (uint64_t{1} << 20)) return "at least 1MiB";
       c.limits.max_memory = *n;
       return "";
     }},
    {"max-wait", Kind::kDuration, "60s", "longest one blocking call waits; clients re-issue",
     [](Config& c, const std::string& t) { return Dur(t, &c.limits.max_wait, ns); }},
    {"max-queues", Kind::kCount, "10000",
     "queues in the broker, dead-letter queues included, before TOO_MANY_QUEUES",
     [](Config& c, const std::string& t) { return Count(t, &c.limits.max_queues); }},
    {"max-waiters-per-queue", Kind::kCount, "100000",
     "blocked calls one queue accepts before TOO_MANY_WAITERS",
     [](Config& c, const std::string& t) { return Count(t, &c.limits.max_waiters_per_queue, 0); }},
    {"default-visibility-timeout", Kind::kDuration, "30s",
     "lease length for queues created without one",
     [](Config& c, const std::string& t) {
       return Dur(t, &c.limits.default_visibility_timeout, ns);
     }},
    {"max-lease", Kind::kDuration, "12h",
     "longest lease a visibility timeout or extension may grant",
     [](Config& c, const std::string& t) { return Dur(t, &c.limits.max_lease, ns); }},
    {"max-subscriber-buffer-messages", Kind::kCount, "1000000",
     "largest buffer (messages) a subscription may ask for",
     [](Config& c, const std::string& t) {
       return Count(t, &c.limits.max_subscriber_buffer_messages);
     }},
    {"max-subscriber-buffer-bytes", Kind::kBytes, "256MiB",
     "largest buffer (bytes) a subscription may ask for",
     [](Config& c, const std::string& t) {
       return Bytes(t, &c.limits.max_subscriber_buffer_bytes, 1,
                    std::numeric_limits<uint64_t>::max());
     }},
    {"max-subscriptions", Kind::kCount, "10000",
     "live subscriptions in the broker before TOO_MANY_SUBSCRIPTIONS",
     [](Config& c, const std::string& t) {
       return Count(t, &c.limits.topic_caps.max_subscriptions);
     }},
    {"max-subscriptions-per-connection", Kind::kCount, "1000",
     "live subscriptions one client connection may hold before TOO_MANY_SUBSCRIPTIONS",
     [](Config& c, const std::string& t) {
       return Count(t, &c.limits.topic_caps.max_subscriptions_per_connection);
     }},
    {"max-subscription-terms", Kind::kCount, "1024",
     "topics plus patterns one subscription may name",
     [](Config& c, const std::string& t) {
       return Count(t, &c.limits.topic_caps.max_subscription_terms);
     }},
    {"max-bindings", Kind::kCount, "100000",
     "topic-to-queue bindings in the broker before TOO_MANY_BINDINGS",
     [](Config& c, const std::string& t) { return Count(t, &c.limits.topic_caps.max_bindings); }},
    {"max-tracked-topics", Kind::kCount, "100000",
     "topics whose counters ListTopics keeps; past it new topics are not counted",
     [](Config& c, const std::string& t) {
       return Count(t, &c.limits.topic_caps.max_tracked_topics);
     }},
    {"max-pattern-nodes", Kind::kCount, "100000",
     "nodes of the pattern index (subscription patterns and bindings) before "
     "TOO_MANY_PATTERN_NODES; a publish visits at most 32 times this many",
     [](Config& c, const std::string& t) {
       return Count(t, &c.limits.topic_caps.max_pattern_nodes);
     }},
    {"max-subscriber-memory", Kind::kBytes, "",
     "part of --max-memory set aside for pub/sub: subscriber buffers, subscriptions, bindings "
     "and the pattern index; queues get the rest (default: a quarter of --max-memory)",
     [](Config& c, const std::string& t) {
       return Bytes(t, &c.limits.topic_caps.max_subscriber_memory, 1,
                    std::numeric_limits<uint64_t>::max());
     }},
    {"data-dir", Kind::kPath, "",
     "directory for durable queues (default: none; durable queues are refused)",
     [](Config& c, const std::string& t) { return NonEmpty(t, &c.data_dir); }},
    {"fsync", Kind::kChoice, "batch", "when a durable put is synced to disk: always|batch|never",
     [](Config& c, const std::string& t) -> std::string {
       if (!storage::ParseFsyncPolicy(t)) return "use always, batch or never";
       c.fsync = t;
       return "";
     }},
    {"fsync-interval", Kind::kDuration, "5ms",
     "with --fsync batch, the longest a put waits for the sync it shares (up to 10s)",
     [](Config& c, const std::string& t) {
       return Dur(t, &c.fsync_interval, std::chrono::nanoseconds(0), std::chrono::seconds(10));
     }},
    {"segment-bytes", Kind::kBytes, "64MiB",
     "size of a durable queue's log segment files (64KiB to 4GiB)",
     [](Config& c, const std::string& t) {
       return Bytes(t, &c.segment_bytes, uint64_t{64} << 10, uint64_t{4} << 30);
     }},
    {"keepalive-time", Kind::kDuration, "30s", "interval of keepalive pings to clients",
     [](Config& c, const std::string& t) {
       return Dur(t, &c.keepalive_time, std::chrono::milliseconds(1), std::chrono::hours(24));
     }},
    {"keepalive-timeout", Kind::kDuration, "10s",
     "a client that does not answer a ping within this is dropped",
     [](Config& c, const std::string& t) {
       return Dur(t, &c.keepalive_timeout, std::chrono::milliseconds(1), std::chrono::hours(24));
     }},
    {"shutdown-grace", Kind::kDuration, "10s",
     "on SIGTERM, how long calls being answered may take before the broker exits anyway",
     [](Config& c, const std::string& t) {
       return Dur(t, &c.shutdown_grace, std::chrono::nanoseconds(0), std::chrono::hours(1));
     }},
    {"http-listen", Kind::kAddress, "",
     "address for /metrics and the dashboard, e.g. 127.0.0.1:9464 (default: none, off)",
     [](Config& c, const std::string& t) { return Address(t, &c.http_listen); }},
    {"http-admin", Kind::kBool, "false",
     "let the dashboard close and delete queues (default: read-only); with users it takes a token "
     "with configure, and off loopback it needs --allow-insecure",
     [](Config& c, const std::string& t) { return Bool(t, &c.http_admin); }},
    {"metrics-max-queues", Kind::kCount, "1000",
     "queues with series of their own in /metrics and the dashboard; the rest are summed as "
     "queue=\"(other)\"",
     [](Config& c, const std::string& t) { return Count(t, &c.metrics_max_queues, 0); }},
    {"metrics-max-topics", Kind::kCount, "1000",
     "topics with series of their own; the rest are summed as topic=\"(other)\"",
     [](Config& c, const std::string& t) { return Count(t, &c.metrics_max_topics, 0); }},
    {"log-level", Kind::kChoice, "info", "trace|debug|info|warn|error|off",
     [](Config& c, const std::string& t) -> std::string {
       for (const char* level : {"trace", "debug", "info", "warn", "error", "off"}) {
         if (t == level) {
           c.log_level = t;
           return "";
         }
       }
       return "use trace, debug, info, warn, error or off";
     }},
    {"log-format", Kind::kChoice, "text", "text|json",
     [](Config& c, const std::string& t) -> std::string {
       if (t != "text" && t != "json") return "use text or json";
       c.log_format = t;
       return "";
     }},
    {"log-file", Kind::kPath, "",
     "append the log to this file, reopened on SIGHUP (default: none, standard error)",
     [](Config& c, const std::string& t) { return NonEmpty(t, &c.log_file); }},
};

}  // namespace

const std::vector<Flag>& Flags() { return kFlags; }

const Flag* FindFlag(const std::string& name) {
  for (const Flag& f : kFlags) {
    if (name == f.name) return &f;
  }
  return nullptr;
}

std::string EnvName(const Flag& flag) {
  std::string env = "BASIN_";
  for (const char* p = flag.name; *p != '\0'; ++p) {
    env += *p == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(*p)));
  }
  return env;
}

const char* ValueName(Kind kind) {
  switch (kind) {
    case Kind::kText:
      return "TEXT";
    case Kind::kAddress:
      return "HOST:PORT";
    case Kind::kPath:
      return "PATH";
    case Kind::kBytes:
      return "BYTES";
    case Kind::kDuration:
      return "DURATION";
    case Kind::kCount:
      return "N";
    case Kind::kBool:
      return "BOOL";
    case Kind::kChoice:
      return "NAME";
  }
  return "VALUE";
}

std::string Reference() {
  std::ostringstream out;
  out << "| Flag | Environment | Default | Meaning |\n|---|---|---|---|\n";
  for (const Flag& f : kFlags) {
    std::string help = f.help;
    // A | would end the table cell.
    for (size_t at = 0; (at = help.find('|', at)) != std::string::npos; at += 2) {
      help.replace(at, 1, "\\|");
    }
    out << "| `--" << f.name << "` | `" << EnvName(f) << "` | "
        << (*f.default_text != '\0' ? "`" + std::string(f.default_text) + "`" : std::string("—"))
        << " | " << help << " |\n";
  }
  return out.str();
}

}  // namespace basin::config
