#include "broker/storage/queue_definition.h"

#include <chrono>
#include <cstdint>
#include <limits>

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
  PutVarint(out, 0);  // options: none yet
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
      return std::nullopt;  // no option is known yet
    }
  }
  return config;
}

}  // namespace basin::storage
