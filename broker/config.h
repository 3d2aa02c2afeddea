// basind's settings. Every setting is a flag defined once, in the table in
// config_flags.cc; the same table makes `basind --help`, the configuration
// reference in docs/operations.md (`basind --config-reference`), the BASIN_*
// environment names and the keys of the config file. Precedence: flag >
// BASIN_* environment > --config file > default.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "broker/core/broker.h"

namespace basin {

// A setting as it took effect, for GetServerInfo and the start-up log.
struct EffectiveSetting {
  std::string name;
  std::string value;
  std::string source;  // "flag", "env BASIN_X", "FILE:LINE", "default"
};

// A queue or a binding the config file declares, created at start if missing.
struct DeclaredQueue {
  core::QueueConfig config;
  std::string where;  // "FILE:LINE", for errors
};
struct DeclaredBinding {
  std::string pattern;
  std::string queue;
  std::string where;
};

struct Config {
  std::string listen = "127.0.0.1:7878";
  core::BrokerLimits limits;
  std::string log_level = "info";
  std::string log_format = "text";  // text | json
  std::string log_file;             // empty: stderr; reopened on SIGHUP
  std::chrono::milliseconds keepalive_time{30'000};
  std::chrono::milliseconds keepalive_timeout{10'000};
  std::chrono::milliseconds shutdown_grace{10'000};
  // Durable queues (docs/api.md, "Durability"). No data_dir: in memory only.
  std::string data_dir;
  std::string fsync = "batch";  // always | batch | never
  std::chrono::microseconds fsync_interval{5'000};
  uint64_t segment_bytes = 64ull << 20;
  // Metrics and dashboard (docs/operations.md). Empty: no HTTP listener.
  std::string http_listen;
  bool http_admin = false;  // the dashboard may close and delete queues
  size_t metrics_max_queues = 1000;
  size_t metrics_max_topics = 1000;

  // TLS (docs/security.md). No cert: plaintext, which only a loopback
  // --listen gets without --allow-insecure.
  std::string tls_cert, tls_key, tls_client_ca;
  std::string tls_client_auth;  // none | request | require; "": require with a CA, else none
  bool allow_insecure = false;
  // Users and permissions (docs/security.md): --users, or the [[users]] of
  // --config. Empty: no authentication (loopback only, as above).
  std::string users_file;
  uint64_t user_rate = 0;        // messages/s a user may write; 0: no limit
  uint64_t user_max_queues = 0;  // queues a user may have created; 0: no limit
  // Per client connection (HTTP/2 streams: calls of any kind, blocked or not).
  uint64_t max_calls_per_connection = 10'000;
  std::chrono::milliseconds max_connection_idle{0};  // 0: never closed for idling
  std::chrono::milliseconds max_connection_age{0};   // 0: no age limit
  std::chrono::milliseconds max_connection_age_grace{0};

  std::string config_file;  // --config, or empty
  std::vector<DeclaredQueue> queues;
  std::vector<DeclaredBinding> bindings;
  std::vector<EffectiveSetting> effective;  // every flag, in table order
};

// Parses flags, environment and the config file. Returns nullopt after
// printing help, the reference or an error (then *exit_code says how to exit:
// 0, or 2 for a usage error).
std::optional<Config> ParseConfig(int argc, char** argv, int* exit_code);

// "30s", "500ms", "2m", "1h", "1.5s"; a bare number is seconds.
std::optional<std::chrono::nanoseconds> ParseDuration(const std::string& text);
// "1048576", "64KiB", "1MiB", "2GiB" (also K/M/G, KB/MB/GB as powers of 1024).
std::optional<uint64_t> ParseBytes(const std::string& text);
// True for 127.x.x.x, [::1] and localhost: an address only this machine reaches.
bool IsLoopbackAddress(const std::string& host_port);
// Half of physical memory, or of the cgroup's limit when that is lower.
uint64_t DefaultMaxMemory();

}  // namespace basin
