// What the storage layer reports about itself (the metrics endpoint reads it):
// one instance per data directory, shared by all of its logs, updated with
// relaxed atomics from the committer's thread and read from any.
#pragma once

#include <atomic>
#include <cstdint>

#include "broker/core/latency_histogram.h"

namespace basin::storage {

struct StorageCounters {
  std::atomic<int64_t> segments{0};  // segment files the open logs hold
  std::atomic<uint64_t> bytes_written{0};
  core::LatencyHistogram fsync;  // every fdatasync of a segment
};

}  // namespace basin::storage
