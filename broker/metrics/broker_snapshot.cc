#include "broker/metrics/broker_snapshot.h"

#include <utility>

namespace basin::metrics {
namespace {

void AddQueueStats(const core::QueueStats& from, core::QueueStats* to) {
  to->size += from.size;
  to->bytes += from.bytes;
  to->unfinished += from.unfinished;
  to->in_flight += from.in_flight;
  to->delayed += from.delayed;
  to->groups += from.groups;
  to->active_groups += from.active_groups;
  to->waiting_getters += from.waiting_getters;
  to->waiting_putters += from.waiting_putters;
  to->waiting_joiners += from.waiting_joiners;
  to->total_put += from.total_put;
  to->total_delivered += from.total_delivered;
  to->total_done += from.total_done;
  to->total_redelivered += from.total_redelivered;
  to->total_dead_lettered += from.total_dead_lettered;
  to->total_rejected += from.total_rejected;
  to->total_expired += from.total_expired;
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
                            size_t max_consumers) {
  BrokerSnapshot s;
  const auto queues = broker.ListQueues();
  s.queue_count = queues.size();
  for (const auto& q : queues) {
    core::QueueStats stats = q->Stats();
    uint64_t at_prefetch = 0;
    for (const auto& c : stats.consumers)
      at_prefetch += c.prefetch != 0 && c.in_flight >= c.prefetch;
    const uint64_t consumers = stats.consumers.size();
    if (s.queues.size() < max_queues) {
      if (stats.consumers.size() > max_consumers) stats.consumers.resize(max_consumers);
      const core::QueueConfig& c = q->config();
      s.queues.push_back({c.name, c.durable, c.max_size, c.dead_letter_queue, 1, consumers,
                          at_prefetch, std::move(stats)});
      continue;
    }
    if (s.queues.size() == max_queues) {
      s.queues.push_back({kOther, false, 0, {}, 0, 0, 0, {}});
      s.queues.back().stats.empty = true;
    }
    QueueRow& other = s.queues.back();
    ++other.queues;
    other.durable = other.durable || q->config().durable;
    other.max_size += q->config().max_size;
    other.consumers += consumers;
    other.consumers_at_prefetch += at_prefetch;
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

std::shared_ptr<const BrokerSnapshot> SnapshotCache::Get() {
  const auto now = std::chrono::steady_clock::now();
  if (last_ == nullptr || now - taken_ >= max_age_) {
    last_ = std::make_shared<const BrokerSnapshot>(
        TakeSnapshot(*broker_, caps_.max_queues, caps_.max_topics, caps_.max_consumers));
    taken_ = now;
  }
  return last_;
}

}  // namespace basin::metrics
