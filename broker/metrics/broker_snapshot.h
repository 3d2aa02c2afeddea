// One look at the broker for the metrics endpoint and the dashboard: every
// queue's and topic's stats, with the label cardinality capped. Queues past
// the first `max_queues` (by name) are summed into one row named kOther, and
// so are topics past `max_topics`: a broker with a million queues must not
// make a scrape a million series long. kOther cannot be a queue's or a
// topic's name (neither allows parentheses).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "broker/core/broker.h"

namespace basin::metrics {

inline constexpr const char* kOther = "(other)";

struct QueueRow {
  std::string name;
  bool durable = false;
  uint64_t max_size = 0;  // 0: unbounded
  std::string dead_letter_queue;
  uint64_t queues = 1;     // how many queues the row sums (kOther: those past the cap)
  uint64_t consumers = 0;  // Consume streams, and those at their prefetch limit
  uint64_t consumers_at_prefetch = 0;
  // stats.consumers lists the queue's consumers, at most `max_consumers` of
  // them; it is empty in the kOther row.
  core::QueueStats stats;
};

struct TopicRow {
  std::string name;
  uint64_t topics = 1;
  core::TopicStats stats;
};

struct BrokerSnapshot {
  std::vector<QueueRow> queues;  // by name, kOther last
  std::vector<TopicRow> topics;  // by name, kOther last
  uint64_t queue_count = 0;      // all queues, before the cap
  uint64_t topic_count = 0;
  uint64_t memory_used = 0;
  uint64_t memory_limit = 0;  // 0: unlimited
};

// Takes each queue's lock in turn, never two at once; topics come from
// TopicRouter::ListTopics. At most `max_consumers` consumers are listed per
// queue (all are counted).
BrokerSnapshot TakeSnapshot(const core::Broker& broker, size_t max_queues, size_t max_topics,
                            size_t max_consumers);

// Snapshots at most every `max_age`: a client polling /metrics or
// /api/overview in a loop costs one pass over the queues per max_age, not
// one per request. For one thread (the HTTP listener's).
class SnapshotCache {
 public:
  struct Caps {
    size_t max_queues = 1000;
    size_t max_topics = 1000;
    size_t max_consumers = 20;
  };
  // `broker` must outlive the cache.
  SnapshotCache(const core::Broker* broker, Caps caps, std::chrono::milliseconds max_age)
      : broker_(broker), caps_(caps), max_age_(max_age) {}

  std::shared_ptr<const BrokerSnapshot> Get();

 private:
  const core::Broker* const broker_;
  const Caps caps_;
  const std::chrono::milliseconds max_age_;
  std::shared_ptr<const BrokerSnapshot> last_;
  std::chrono::steady_clock::time_point taken_{};
};

}  // namespace basin::metrics
