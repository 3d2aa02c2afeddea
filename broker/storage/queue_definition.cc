#include "broker/storage/queue_definition.h"

#include "broker/storage/varint.h"

namespace basin::storage {
namespace {

constexpr char kVersion = 1;

}  // namespace

std::string EncodeDefinition(const core::QueueConfig& config) {
  std::string out(1, kVersion);
  PutBytes(out, config.name);
  PutVarint(out, config.max_size);
  PutVarint(out, static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                           config.visibility_timeout)
                                           .count()));
  PutVarint(out, config.max_deliveries);
  PutBytes(out, config.dead_letter_queue);
  PutVarint(out, config.max_bytes);
  return out;
}

std::optional<core::QueueConfig> DecodeDefinition(std::string_view in) {
  if (in.empty() || in.front() != kVersion) return std::nullopt;
  in.remove_prefix(1);
  core::QueueConfig config;
  auto name = GetBytes(in);
  auto max_size = GetVarint(in);
  auto visibility_us = GetVarint(in);
  auto max_deliveries = GetVarint(in);
  auto dead_letter = GetBytes(in);
  auto max_bytes = GetVarint(in);
  if (!name || !max_size || !visibility_us || !max_deliveries || !dead_letter || !max_bytes ||
      *max_deliveries > UINT32_MAX) {
    return std::nullopt;
  }
  config.name = std::move(*name);
  config.max_size = *max_size;
  config.visibility_timeout = std::chrono::microseconds(*visibility_us);
  config.max_deliveries = static_cast<uint32_t>(*max_deliveries);
  config.dead_letter_queue = std::move(*dead_letter);
  config.max_bytes = *max_bytes;
  config.durable = true;
  return config;
}

}  // namespace basin::storage
