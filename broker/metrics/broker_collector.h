// The series read from the broker at scrape time (queues, topics, memory,
// storage, process) rather than counted on the hot path: a scrape costs one
// pass over the queues and topics (a BrokerSnapshot), a put nothing extra.
// See docs/operations.md, "Metrics reference".
#pragma once

#include <prometheus/metric_family.h>

#include <chrono>
#include <memory>

#include "broker/metrics/broker_snapshot.h"
#include "broker/storage/storage_counters.h"

namespace basin::metrics {

// The caps on queues and topics are the snapshot's (SnapshotCache::Caps).
struct CollectorOptions {
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  double recovery_seconds = 0;
};

class BrokerCollector {
 public:
  // `storage` is null without --data-dir.
  BrokerCollector(std::shared_ptr<const storage::StorageCounters> storage, CollectorOptions options)
      : storage_(std::move(storage)), options_(options) {}

  std::vector<prometheus::MetricFamily> Collect(const BrokerSnapshot& snapshot) const;

 private:
  const std::shared_ptr<const storage::StorageCounters> storage_;
  const CollectorOptions options_;
};

}  // namespace basin::metrics
