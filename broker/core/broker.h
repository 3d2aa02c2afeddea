// The registry of queues: creation (with name and option checks), lookup,
// listing, deletion and shutdown. It owns the broker-wide memory budget. No
// global state: a process may hold several Brokers (tests do).
//
// Locks (docs/design.md, "Lock order"): bindings_mu_, then mu_ or the
// TopicRouter's locks. mu_ guards the registry alone and is held for lookups
// only: never across disk I/O, router work or a call into a Queue.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "broker/core/deadline_scheduler.h"
#include "broker/core/durable_store.h"
#include "broker/core/errc.h"
#include "broker/core/lock_rank.h"
#include "broker/core/memory_budget.h"
#include "broker/core/queue.h"
#include "broker/core/time.h"
#include "broker/core/topic_router.h"

namespace basin::core {

struct BrokerLimits {
  uint64_t max_message_bytes = 1 << 20;
  uint64_t max_memory = 0;  // 0 = unlimited
  // Queues in the broker (dead-letter queues included): each costs fixed
  // bookkeeping outside --max-memory, and a durable one an open file.
  size_t max_queues = 10'000;
  size_t max_waiters_per_queue = 100'000;
  Duration max_wait = std::chrono::seconds(60);
  Duration max_lease = std::chrono::hours(12);
  Duration default_visibility_timeout = std::chrono::seconds(30);
  size_t default_subscriber_buffer_messages = 10'000;
  uint64_t default_subscriber_buffer_bytes = 16 << 20;
  size_t max_subscriber_buffer_messages = 1'000'000;
  uint64_t max_subscriber_buffer_bytes = 256 << 20;
  // Subscriptions, bindings, tracked topics and subscriber memory; the router
  // gets them with its other limits.
  TopicCaps topic_caps{};
};

// 1 to 200 characters of [A-Za-z0-9._-].
Result<void> ValidateQueueName(std::string_view name);

class Broker {
 public:
  // `scheduler` may be null (unit tests then call ExpireDue themselves); it
  // must outlive the Broker. `store` (null: no --data-dir, durable queues
  // are refused) must outlive it too.
  Broker(BrokerLimits limits, DeadlineScheduler* scheduler, DurableStore* store = nullptr);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  struct Created {
    std::shared_ptr<Queue> queue;
    bool created = false;
  };
  // Idempotent for identical settings (after defaults are filled in). With
  // `may_create` false it only attaches: a missing queue is kQueueNotFound
  // (a caller allowed to use a queue but not to configure one).
  Result<Created> CreateQueue(QueueConfig config, bool may_create = true);

  // Rebuilds the durable queues the store holds; called once, at start,
  // before the broker serves.
  struct Recovery {
    size_t queues = 0;
    uint64_t messages = 0;
    std::vector<std::string> warnings;
  };
  Result<Recovery> Recover(TimePoint now);
  Result<std::shared_ptr<Queue>> FindQueue(std::string_view name) const;
  // Ordered by name.
  std::vector<std::shared_ptr<Queue>> ListQueues() const;
  // Returns the number of messages dropped.
  Result<uint64_t> DeleteQueue(std::string_view name);
  // Ends every blocked call and subscription with kShutdown and refuses new
  // waits.
  void Shutdown();

  // Binds a topic or pattern to an existing queue; false if already bound.
  Result<bool> BindQueue(const std::string& pattern, const std::string& queue);
  Result<void> UnbindQueue(const std::string& pattern, const std::string& queue);

  TopicRouter& topics() { return router_; }
  const TopicRouter& topics() const { return router_; }
  const BrokerLimits& limits() const { return limits_; }
  const MemoryBudget& memory() const { return memory_; }

 private:
  // With mu_ held.
  Result<std::shared_ptr<Queue>> FindDeadLetter(const QueueConfig& config) const;
  // The queue registered under `name` (null if none); takes mu_.
  std::shared_ptr<Queue> Registered(const std::string& name) const;
  std::shared_ptr<Queue> NewQueue(const QueueConfig& config, std::shared_ptr<Queue> dead_letter,
                                  std::shared_ptr<QueueJournal> journal);

  const BrokerLimits limits_;
  DeadlineScheduler* const scheduler_;
  DurableStore* const store_;
  MemoryBudget memory_;  // declared first: queues and subscriptions release into it
  TopicRouter router_;

  // Serialises binding changes with DeleteQueue's removal of bindings.
  RankedMutex<LockRank::kBrokerBindings> bindings_mu_;
  mutable RankedMutex<LockRank::kBrokerRegistry> mu_;
  std::map<std::string, std::shared_ptr<Queue>, std::less<>> queues_;
  // Durable queues whose files are being created: name -> dead-letter queue.
  std::map<std::string, std::string, std::less<>> creating_;
  std::condition_variable_any creating_cv_;
  // Durable queues whose files are being removed: the name is not free yet.
  std::set<std::string, std::less<>> deleting_;
  uint64_t next_incarnation_;
  bool shutting_down_ = false;
};

}  // namespace basin::core
