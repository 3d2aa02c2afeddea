// The series read from the broker at scrape time (queues, topics, memory,
// storage, process) rather than counted on the hot path: a scrape costs
// O(queues + topics) once, a put costs nothing extra. See docs/operations.md,
// "Metrics reference".
#pragma once

#include <prometheus/collectable.h>

#include <chrono>
#include <memory>

#include "broker/core/broker.h"
#include "broker/storage/storage_counters.h"

namespace basin::metrics {

struct CollectorOptions {
  size_t max_queues = 1000;  // --metrics-max-queues
  size_t max_topics = 1000;  // --metrics-max-topics
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  double recovery_seconds = 0;
};

class BrokerCollector final : public prometheus::Collectable {
 public:
  // `broker` must outlive the collector; `storage` is null without --data-dir.
  BrokerCollector(const core::Broker* broker,
                  std::shared_ptr<const storage::StorageCounters> storage, CollectorOptions options)
      : broker_(broker), storage_(std::move(storage)), options_(options) {}

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const core::Broker* const broker_;
  const std::shared_ptr<const storage::StorageCounters> storage_;
  const CollectorOptions options_;
};

}  // namespace basin::metrics
