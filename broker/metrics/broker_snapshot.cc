#include "broker/metrics/broker_snapshot.h"

#include <utility>

namespace basin::metrics {
namespace {

void AddQueueStats(const core::QueueStats& from, core::QueueStats* to) {
  to->size += from.size;
  to->bytes += from.bytes;
  to->unfinished += from.unfinished;
  to->in_flight += from.in_flight;
  to->waiting_getters += from.waiting_getters;
  to->waiting_putters += from.waiting_putters;
  to->waiting_joiners += from.waiting_joiners;
  to->total_put += from.total_put;
  to->total_delivered += from.total_delivered;
  to->total_done += from.total_done;
  to->total_redelivered += from.total_redelivered;
  to->total_dead_lettered += from.total_dead_lettered;
  to->total_rejected += from.total_rejected;
  to->consumers.insert(to->consumers.end(), from.consumers.begin(), from.consumers.end());
}

void AddTopicStats(const core::TopicStats& from, core::TopicStats* to) {
  to->subscribers += from.subscribers;
  to->published += from.published;
  to->delivered += from.delivered;
  to->dropped += from.dropped;
  to->routed += from.routed;
}

}  // namespace

BrokerSnapshot TakeSnapshot(const core::Broker& broker, size_t max_queues, size_t max_topics,
                            bool consumers) {
  BrokerSnapshot s;
  const auto queues = broker.ListQueues();
  s.queue_count = queues.size();
  for (const auto& q : queues) {
    core::QueueStats stats = q->Stats();
    if (!consumers) stats.consumers.clear();
    if (s.queues.size() < max_queues) {
      const core::QueueConfig& c = q->config();
      s.queues.push_back({c.name, c.durable, c.max_size, c.dead_letter_queue, 1, std::move(stats)});
      continue;
    }
    if (s.queues.size() == max_queues) {
      s.queues.push_back({kOther, false, 0, {}, 0, {}});
      s.queues.back().stats.empty = true;
    }
    QueueRow& other = s.queues.back();
    ++other.queues;
    other.durable = other.durable || q->config().durable;
    // The aggregated row would otherwise grow with the number of consumers
    // in every queue past the cap.
    stats.consumers.clear();
    AddQueueStats(stats, &other.stats);
  }
  auto topics = broker.topics().ListTopics();
  s.topic_count = topics.size();
  for (auto& t : topics) {
    if (s.topics.size() < max_topics) {
      std::string name = t.name;
      s.topics.push_back({std::move(name), 1, std::move(t)});
      continue;
    }
    if (s.topics.size() == max_topics) s.topics.push_back({kOther, 0, {}});
    ++s.topics.back().topics;
    AddTopicStats(t, &s.topics.back().stats);
  }
  s.memory_used = broker.memory().used();
  s.memory_limit = broker.memory().limit();
  return s;
}

}  // namespace basin::metrics
