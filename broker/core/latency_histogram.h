// A fixed-bucket histogram of durations that many threads observe into
// without a lock: one relaxed atomic add per bucket hit, per count and per
// sum. For hot paths (the storage layer's fdatasync, RPC latencies) whose
// owners must not depend on a metrics library; broker/metrics turns a
// Snapshot into Prometheus text.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace basin::core {

class LatencyHistogram {
 public:
  // Upper bounds in seconds, ascending; +Inf is implied. 100 µs to 60 s
  // covers an fdatasync on any disk and a unary call up to --max-wait.
  static constexpr std::array<double, 18> kBounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                     0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                                     1,      2.5,     5,      10,    30,     60};

  void Observe(std::chrono::nanoseconds d) {
    const double seconds = std::chrono::duration<double>(d).count();
    size_t b = 0;
    while (b < kBounds.size() && seconds > kBounds[b]) ++b;
    buckets_[b].fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(static_cast<uint64_t>(d.count() > 0 ? d.count() : 0),
                      std::memory_order_relaxed);
  }

  struct Snapshot {
    uint64_t count = 0;
    double sum_seconds = 0;
    // Per bucket, not cumulative; the last is +Inf.
    std::array<uint64_t, kBounds.size() + 1> buckets{};
  };
  // Not atomic as a whole: a concurrent Observe may show in a bucket and not
  // yet in count. The count is taken as the buckets' total so that a scrape
  // stays self-consistent (count equals the +Inf bucket).
  Snapshot Read() const {
    Snapshot s;
    for (size_t b = 0; b < buckets_.size(); ++b) {
      s.buckets[b] = buckets_[b].load(std::memory_order_relaxed);
      s.count += s.buckets[b];
    }
    s.sum_seconds = static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
    return s;
  }

 private:
  std::array<std::atomic<uint64_t>, kBounds.size() + 1> buckets_{};
  std::atomic<uint64_t> sum_ns_{0};
};

}  // namespace basin::core
