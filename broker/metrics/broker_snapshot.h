// One look at the broker for the metrics endpoint and the dashboard: every
// queue's and topic's stats, with the label cardinality capped. Queues past
// the first `max_queues` (by name) are summed into one row named kOther, and
// so are topics past `max_topics`: a broker with a million queues must not
// make a scrape a million series long. kOther cannot be a queue's or a
// topic's name (neither allows parentheses).
#pragma once

#include <cstdint>
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
  uint64_t queues = 1;  // how many queues the row sums (more than 1 for kOther)
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
// TopicRouter::ListTopics. Consumers' rows are kept only when `consumers`.
BrokerSnapshot TakeSnapshot(const core::Broker& broker, size_t max_queues, size_t max_topics,
                            bool consumers);

}  // namespace basin::metrics
