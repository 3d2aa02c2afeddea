// Pub/sub: routes each published message to the live subscriptions whose
// topics or patterns match it, and puts a copy into every bound queue.
//
// API:
//   Publish      never blocks. Subscribers get the message through their own
//                bounded buffers (see subscription.h); bound queues get it
//                through Queue::Offer, and a queue that refuses (full, closed,
//                out of memory) is reported back, not waited for. The outcome
//                is reported once every copy into a durable queue is written
//                (a copy whose write fails counts as undelivered).
//   Subscribe / Unsubscribe
//                a subscription lives from Subscribe until Unsubscribe or
//                Shutdown, which both End() it.
//   Bind / Unbind / RemoveBindingsTo
//                topic-to-queue bindings; the Broker calls these under its own
//                lock so that a binding never outlives its queue.
//
// Ordering: a publisher's messages reach each subscription in publish order,
// since a publish hands the message to every buffer before it returns.
// A subscription that matches a message by several of its topics and patterns
// receives it once, naming the first match (exact topics before patterns).
//
// Lock order: mu_ before stats_mu_; no queue or subscription lock is taken
// while holding either.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "broker/core/errc.h"
#include "broker/core/memory_budget.h"
#include "broker/core/queue.h"
#include "broker/core/subscription.h"
#include "broker/core/time.h"

namespace basin::core {

struct TopicLimits {
  uint64_t max_message_bytes = 1 << 20;
  size_t default_buffer_messages = 10'000;
  uint64_t default_buffer_bytes = 16 << 20;
  size_t max_buffer_messages = 1'000'000;
  uint64_t max_buffer_bytes = 256 << 20;
};

struct PublishOutcome {
  uint64_t receivers = 0;  // subscriptions that buffered the message
  uint64_t queues = 0;     // bound queues that took a copy
  std::vector<std::string> undelivered_queues;
};

struct TopicStats {
  std::string name;
  uint64_t subscribers = 0;  // subscriptions a publish to this topic reaches now
  uint64_t published = 0;
  uint64_t delivered = 0;
  uint64_t dropped = 0;
  uint64_t routed = 0;
};

struct BindingInfo {
  std::string pattern;
  std::string queue;
};

class TopicRouter {
 public:
  TopicRouter(TopicLimits limits, MemoryBudget* memory);
  ~TopicRouter();
  TopicRouter(const TopicRouter&) = delete;
  TopicRouter& operator=(const TopicRouter&) = delete;

  // `done` runs exactly once: inline when no bound durable queue took a copy,
  // else on the thread that wrote the last durable copy.
  using PublishDone = std::function<void(Result<PublishOutcome>)>;
  void Publish(std::string_view topic, std::string_view payload, const Headers& headers,
               TimePoint now, PublishDone done);

  // Buffer sizes of 0 take the defaults. `wake` is the subscription's wake-up
  // (see Subscription); it must stay callable until Unsubscribe returns.
  Result<std::shared_ptr<Subscription>> Subscribe(SubscriptionOptions options,
                                                  std::function<void()> wake);
  // Removes the subscription and ends its stream with `why`. Idempotent.
  void Unsubscribe(const std::shared_ptr<Subscription>& sub, Error why);

  // Returns false when the binding already existed.
  Result<bool> Bind(const std::string& pattern, std::shared_ptr<Queue> queue);
  Result<void> Unbind(const std::string& pattern, const std::string& queue);
  void RemoveBindingsTo(const std::string& queue);
  std::vector<std::string> BindingsOf(const std::string& queue) const;

  // Ordered by name: every topic published to or subscribed to by exact name.
  std::vector<TopicStats> ListTopics() const;
  // Ordered by pattern, then queue.
  std::vector<BindingInfo> ListBindings() const;

  // Ends every subscription with kShutdown and refuses new ones.
  void Shutdown();

 private:
  struct Counters {
    uint64_t published = 0;
    uint64_t delivered = 0;
    uint64_t dropped = 0;
    uint64_t routed = 0;
    uint64_t exact_subscribers = 0;
  };
  using SubPtr = std::shared_ptr<Subscription>;

  // Under stats_mu_: the counters of `topic`, created if new.
  Counters& CountersLocked(const std::string& topic);
  void CountStats(std::string_view topic, const PublishOutcome& out,
                  const std::vector<PublishedPtr>& dropped);
  void RemoveLocked(const Subscription& sub);

  const TopicLimits limits_;
  MemoryBudget* const memory_;

  mutable std::shared_mutex mu_;
  std::unordered_map<uint64_t, SubPtr> subs_;
  std::unordered_map<std::string, std::vector<SubPtr>> by_topic_;
  std::vector<std::pair<const std::string*, SubPtr>> by_pattern_;
  std::map<std::pair<std::string, std::string>, std::shared_ptr<Queue>> bindings_;
  uint64_t next_id_ = 1;
  bool shutting_down_ = false;

  mutable std::mutex stats_mu_;
  std::map<std::string, Counters, std::less<>> topics_;
};

}  // namespace basin::core
