// A core::LatencyHistogram as a Prometheus histogram sample. The hot paths
// (every RPC's status, every fdatasync) count into lock-free histograms of
// their own rather than prometheus::Histogram, whose Observe takes a mutex:
// every Put from every gRPC thread and the committer would queue on it.
#pragma once

#include <prometheus/client_metric.h>

#include <limits>

#include "broker/core/latency_histogram.h"

namespace basin::metrics {

inline prometheus::ClientMetric HistogramMetric(
    const core::LatencyHistogram::Snapshot& h,
    std::vector<prometheus::ClientMetric::Label> labels) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  m.histogram.sample_count = h.count;
  m.histogram.sample_sum = h.sum_seconds;
  uint64_t cumulative = 0;
  for (size_t b = 0; b < h.buckets.size(); ++b) {
    cumulative += h.buckets[b];
    const double bound = b < core::LatencyHistogram::kBounds.size()
                             ? core::LatencyHistogram::kBounds[b]
                             : std::numeric_limits<double>::infinity();
    m.histogram.bucket.push_back({cumulative, bound});
  }
  return m;
}

}  // namespace basin::metrics
