// A durable queue's settings as its log's kDefined record holds them: a
// version byte, then each field of core::QueueConfig in a fixed order. A
// broker reads definitions written by older versions of itself, so fields
// are only ever added at the end, and a field whose meaning changes gets a
// new version (2: the visibility timeout in nanoseconds, not microseconds;
// 3: then a list of (tag, value) options, where an unknown tag fails the
// decode — and a queue that may hold records an older broker cannot read
// (scheduling attributes) has a version 3 definition, so that an older
// broker refuses the queue, keeping its files, instead of losing messages).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "broker/core/queue_config.h"

namespace basin::storage {

std::string EncodeDefinition(const core::QueueConfig& config);
// nullopt if `encoded` is not a definition this version can read.
std::optional<core::QueueConfig> DecodeDefinition(std::string_view encoded);
// Whether `encoded` is of the version EncodeDefinition writes.
bool IsCurrentDefinition(std::string_view encoded);

}  // namespace basin::storage
