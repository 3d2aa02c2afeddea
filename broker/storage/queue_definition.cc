#include "broker/storage/queue_definition.h"

#include <chrono>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "broker/storage/varint.h"

namespace basin::storage {
namespace {

// 2: the visibility timeout in nanoseconds, as the core keeps it (1 had
// microseconds, so a sub-microsecond timeout came back different and an
// identical re-create after a restart was refused as a conflict).
// 3: options as (tag, bytes) pairs after the fixed fields.
constexpr char kVersion = 3;
constexpr char kNanosecondsVersion = 2;
constexpr char kMicrosecondsVersion = 1;

// Version 3 options.
enum class Option : uint64_t { kMessageTtl = 1, kMaxPriority = 2, kRetryBackoff = 3 };

uint64_t Nanoseconds(core::Duration d) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
}

std::optional<std::vector<core::Duration>> DecodeDurations(std::string_view in) {
  const auto count = GetVarint(in);
  if (!count || *count > core::kMaxRetryBackoff) return std::nullopt;
  std::vector<core::Duration> out;
  for (uint64_t i = 0; i < *count; ++i) {
    const auto ns = GetVarint(in);
    if (!ns || *ns > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return std::nullopt;
    }
    out.push_back(std::chrono::duration_cast<core::Duration>(
        std::chrono::nanoseconds(static_cast<int64_t>(*ns))));
  }
  if (!in.empty()) return std::nullopt;
  return out;
}

}  // namespace

std::string EncodeDefinition(const core::QueueConfig& config) {
  std::string out(1, kVersion);
  PutBytes(out, config.name);
  PutVarint(out, config.max_size);
  // The broker refuses negative timeouts; one would not decode, not wrap.
  PutVarint(
      out,
      static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(config.visibility_timeout).count()));
  PutVarint(out, config.max_deliveries);
  PutBytes(out, config.dead_letter_queue);
  PutVarint(out, config.max_bytes);
  // Options, each as (tag, bytes): only those set, so a queue without them
  // reads the same in every version 3 broker.
  std::vector<std::pair<Option, std::string>> options;
  if (config.message_ttl > core::Duration::zero()) {
    std::string value;
    PutVarint(value, Nanoseconds(config.message_ttl));
    options.emplace_back(Option::kMessageTtl, std::move(value));
  }
  if (config.max_priority != 0) {
    std::string value;
    PutVarint(value, config.max_priority);
    options.emplace_back(Option::kMaxPriority, std::move(value));
  }
  if (!config.retry_backoff.empty()) {
    std::string value;
    PutVarint(value, config.retry_backoff.size());
    for (core::Duration d : config.retry_backoff) PutVarint(value, Nanoseconds(d));
    options.emplace_back(Option::kRetryBackoff, std::move(value));
  }
  PutVarint(out, options.size());
  for (const auto& [tag, value] : options) {
    PutVarint(out, static_cast<uint64_t>(tag));
    PutBytes(out, value);
  }
  return out;
}

bool IsCurrentDefinition(std::string_view encoded) {
  return !encoded.empty() && encoded.front() == kVersion;
}

std::optional<core::QueueConfig> DecodeDefinition(std::string_view in) {
  if (in.empty() || (in.front() != kVersion && in.front() != kNanosecondsVersion &&
                     in.front() != kMicrosecondsVersion)) {
    return std::nullopt;
  }
  const bool microseconds = in.front() == kMicrosecondsVersion;
  const bool options = in.front() == kVersion;
  in.remove_prefix(1);
  core::QueueConfig config;
  auto name = GetBytes(in);
  auto max_size = GetVarint(in);
  auto visibility = GetVarint(in);
  auto max_deliveries = GetVarint(in);
  auto dead_letter = GetBytes(in);
  auto max_bytes = GetVarint(in);
  constexpr uint64_t kMaxNanoseconds = std::numeric_limits<int64_t>::max();
  const uint64_t unit = microseconds ? 1000 : 1;
  if (!name || !max_size || !visibility || !max_deliveries || !dead_letter || !max_bytes ||
      *max_deliveries > UINT32_MAX || *visibility > kMaxNanoseconds / unit) {
    return std::nullopt;
  }
  config.name = std::move(*name);
  config.max_size = *max_size;
  config.visibility_timeout = std::chrono::duration_cast<core::Duration>(
      std::chrono::nanoseconds(static_cast<int64_t>(*visibility * unit)));
  config.max_deliveries = static_cast<uint32_t>(*max_deliveries);
  config.dead_letter_queue = std::move(*dead_letter);
  config.max_bytes = *max_bytes;
  config.durable = true;
  if (options) {
    const auto count = GetVarint(in);
    if (!count || *count > in.size()) return std::nullopt;
    for (uint64_t i = 0; i < *count; ++i) {
      const auto tag = GetVarint(in);
      const auto value = GetBytes(in);
      if (!tag || !value) return std::nullopt;
      std::string_view v = *value;
      switch (static_cast<Option>(*tag)) {
        case Option::kMessageTtl: {
          const auto ns = GetVarint(v);
          if (!ns || !v.empty() || *ns > kMaxNanoseconds) return std::nullopt;
          config.message_ttl = std::chrono::duration_cast<core::Duration>(
              std::chrono::nanoseconds(static_cast<int64_t>(*ns)));
          break;
        }
        case Option::kMaxPriority: {
          const auto p = GetVarint(v);
          if (!p || !v.empty() || *p > core::kMaxPriority) return std::nullopt;
          config.max_priority = static_cast<uint8_t>(*p);
          break;
        }
        case Option::kRetryBackoff: {
          auto backoff = DecodeDurations(v);
          if (!backoff) return std::nullopt;
          config.retry_backoff = std::move(*backoff);
          break;
        }
        default:
          return std::nullopt;  // a newer broker's option: do not guess
      }
    }
  }
  return config;
}

}  // namespace basin::storage
