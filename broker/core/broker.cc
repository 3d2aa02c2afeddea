#include "broker/core/broker.h"

#include <algorithm>

namespace basin::core {
namespace {

constexpr size_t kMaxQueueNameLength = 200;

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

}  // namespace

Result<void> ValidateQueueName(std::string_view name) {
  if (name.empty() || name.size() > kMaxQueueNameLength ||
      !std::all_of(name.begin(), name.end(), IsNameChar)) {
    return Error{Errc::kInvalidName, "queue name '" + std::string(name.substr(0, 64)) +
                                         (name.size() > 64 ? "..." : "") +
                                         "' is invalid: use 1 to 200 characters of [A-Za-z0-9._-]"};
  }
  return {};
}

Broker::Broker(BrokerLimits limits, DeadlineScheduler* scheduler, DurableStore* store)
    : limits_(limits),
      scheduler_(scheduler),
      store_(store),
      memory_(limits.max_memory),
      router_(
          TopicLimits{limits.max_message_bytes, limits.default_subscriber_buffer_messages,
                      limits.default_subscriber_buffer_bytes, limits.max_subscriber_buffer_messages,
                      limits.max_subscriber_buffer_bytes, limits.topic_caps},
          &memory_),
      // Incarnations start from the wall clock so that tags issued by an
      // earlier run of the broker are never taken for this run's.
      next_incarnation_(
          static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count())) {}

Broker::~Broker() {
  // Queues are destroyed outside mu_: a queue's destructor releases memory,
  // which may call into other queues.
  std::map<std::string, std::shared_ptr<Queue>, std::less<>> queues;
  {
    std::lock_guard lock(mu_);
    queues.swap(queues_);
  }
}

Result<Broker::Created> Broker::CreateQueue(QueueConfig config, bool may_create) {
  if (auto ok = ValidateQueueName(config.name); !ok.ok()) return ok.error();
  if (config.visibility_timeout < Duration::zero()) {
    return Error{Errc::kInvalidTimeout, "visibility_timeout must not be negative"};
  }
  if (config.visibility_timeout == Duration::zero()) {
    config.visibility_timeout = limits_.default_visibility_timeout;
  }
  if (config.visibility_timeout > limits_.max_lease) {
    return Error{
        Errc::kInvalidTimeout,
        "visibility_timeout exceeds the maximum lease of " +
            std::to_string(
                std::chrono::duration_cast<std::chrono::seconds>(limits_.max_lease).count()) +
            " s"};
  }
  if (config.max_priority > kMaxPriority) {
    return Error{Errc::kInvalidArgument, "max_priority " + std::to_string(config.max_priority) +
                                             " is above the limit of " +
                                             std::to_string(kMaxPriority)};
  }
  if (config.message_ttl < Duration::zero()) {
    return Error{Errc::kInvalidTimeout, "message_ttl must not be negative"};
  }
  if (config.message_ttl > kMaxTtl) {
    return Error{Errc::kInvalidArgument,
                 "message_ttl is longer than the limit of " + DaysText(kMaxTtl)};
  }
  if (config.retry_backoff.size() > kMaxRetryBackoff) {
    return Error{Errc::kInvalidArgument,
                 "retry_backoff has " + std::to_string(config.retry_backoff.size()) +
                     " entries; the limit is " + std::to_string(kMaxRetryBackoff)};
  }
  for (Duration d : config.retry_backoff) {
    if (d < Duration::zero()) {
      return Error{Errc::kInvalidTimeout, "retry_backoff entries must not be negative"};
    }
    if (d > kMaxDelay) {
      return Error{Errc::kInvalidArgument,
                   "a retry_backoff entry is longer than the limit of " + DaysText(kMaxDelay)};
    }
  }
  if (!config.dead_letter_queue.empty()) {
    if (auto ok = ValidateQueueName(config.dead_letter_queue); !ok.ok()) return ok.error();
    if (config.dead_letter_queue == config.name) {
      return Error{Errc::kInvalidArgument,
                   "queue '" + config.name + "' cannot be its own dead-letter queue"};
    }
  }
  if (config.durable && store_ == nullptr) {
    return Error{Errc::kInvalidArgument, "queue '" + config.name +
                                             "' cannot be durable: the broker runs without "
                                             "--data-dir (in memory only)"};
  }

  std::unique_lock lock(mu_);
  // A durable create of the same name in progress: its answer decides ours
  // (an identical create is idempotent). It waits for one create's I/O.
  creating_cv_.wait(lock, [&] { return !creating_.contains(config.name); });
  if (shutting_down_) return Error{Errc::kShutdown, "broker is shutting down"};
  if (auto it = queues_.find(config.name); it != queues_.end()) {
    if (it->second->config() == config) return Created{it->second, false};
    return Error{Errc::kQueueExists,
                 "queue '" + config.name + "' already exists with different settings"};
  }
  if (!may_create) return Error{Errc::kQueueNotFound, "queue '" + config.name + "' not found"};
  if (deleting_.contains(config.name)) {
    return Error{Errc::kQueueExists,
                 "queue '" + config.name + "' is being deleted; retry the create"};
  }
  if (queues_.size() + creating_.size() >= limits_.max_queues) {
    return Error{Errc::kTooManyQueues, "the broker has " +
                                           std::to_string(queues_.size() + creating_.size()) +
                                           " queues (limit " + std::to_string(limits_.max_queues) +
                                           ", those being created included); delete one first"};
  }
  auto dead_letter = FindDeadLetter(config);
  if (!dead_letter.ok()) return dead_letter.error();
  if (!config.durable)
    return Created{NewQueue(config, std::move(dead_letter.value()), nullptr), true};
  // The store's I/O (mkdir, definition, fsyncs) happens without mu_, so
  // lookups by every other call go on meanwhile: the name is reserved, and
  // its dead-letter queue cannot be deleted while the reservation names it.
  creating_.emplace(config.name, config.dead_letter_queue);
  lock.unlock();
  auto created = store_->Create(config);
  lock.lock();
  creating_.erase(config.name);
  creating_cv_.notify_all();
  if (!created.ok()) return created.error();
  // Shutdown ended every queue while the files were written: this one would
  // never hear of it. Its files stay; the next start recovers it.
  if (shutting_down_) return Error{Errc::kShutdown, "broker is shutting down"};
  auto queue = NewQueue(config, std::move(dead_letter.value()), std::move(created.value()));
  return Created{std::move(queue), true};
}

Result<std::shared_ptr<Queue>> Broker::FindDeadLetter(const QueueConfig& config) const {
  if (config.dead_letter_queue.empty()) return std::shared_ptr<Queue>();
  auto it = queues_.find(config.dead_letter_queue);
  if (it == queues_.end()) {
    return Error{Errc::kDeadLetterNotFound, "dead-letter queue '" + config.dead_letter_queue +
                                                "' for queue '" + config.name +
                                                "' does not exist; create it first"};
  }
  // A durable queue's dead letters must survive a restart as it does.
  if (config.durable && !it->second->config().durable) {
    return Error{Errc::kInvalidArgument, "durable queue '" + config.name +
                                             "' needs a durable dead-letter queue; '" +
                                             config.dead_letter_queue + "' is in memory only"};
  }
  return it->second;
}

std::shared_ptr<Queue> Broker::NewQueue(const QueueConfig& config,
                                        std::shared_ptr<Queue> dead_letter,
                                        std::shared_ptr<QueueJournal> journal) {
  QueueLimits ql{limits_.max_message_bytes, limits_.max_waiters_per_queue, limits_.max_lease};
  auto queue = std::make_shared<Queue>(config, next_incarnation_++, ql, &memory_, scheduler_,
                                       std::move(dead_letter), std::move(journal));
  queues_.emplace(config.name, queue);
  return queue;
}

Result<Broker::Recovery> Broker::Recover(TimePoint now) {
  Recovery out;
  if (store_ == nullptr) return out;
  auto found = store_->Recover();
  if (!found.ok()) return found.error();
  std::vector<DurableStore::Recovered> left = std::move(found.value());
  // A dead-letter queue is created before the queues that use it.
  std::vector<std::pair<std::shared_ptr<Queue>, DurableStore::Recovered>> restored;
  for (bool progress = true; progress && !left.empty();) {
    progress = false;
    std::lock_guard lock(mu_);
    for (auto it = left.begin(); it != left.end();) {
      auto dead_letter = FindDeadLetter(it->config);
      if (!dead_letter.ok()) {
        ++it;
        continue;
      }
      auto queue = NewQueue(it->config, std::move(dead_letter.value()), it->journal);
      restored.emplace_back(std::move(queue), std::move(*it));
      it = left.erase(it);
      progress = true;
    }
  }
  for (const DurableStore::Recovered& r : left) {
    out.warnings.push_back("queue '" + r.config.name + "' not recovered: its dead-letter queue '" +
                           r.config.dead_letter_queue + "' was not found");
  }
  // Restored outside mu_: a restore may dead-letter, which calls into queues.
  for (auto& [queue, r] : restored) {
    out.messages += r.messages.size();
    queue->Restore(std::move(r.messages), r.next_id, r.closed, r.keys, now);
    // Kept beyond the caps and the subscriber share, charged all the same:
    // refused, a binding would vanish from routing while its log keeps it.
    for (const std::string& pattern : r.bindings) {
      if (auto bound = router_.RestoreBinding(pattern, queue); !bound.ok()) {
        out.warnings.push_back("queue '" + r.config.name + "': binding '" + pattern +
                               "' not restored: " + bound.error().message);
      }
    }
  }
  out.queues = restored.size();
  return out;
}

Result<std::shared_ptr<Queue>> Broker::FindQueue(std::string_view name) const {
  if (auto ok = ValidateQueueName(name); !ok.ok()) return ok.error();
  std::lock_guard lock(mu_);
  auto it = queues_.find(name);
  if (it == queues_.end()) {
    return Error{Errc::kQueueNotFound, "queue '" + std::string(name) + "' does not exist"};
  }
  return it->second;
}

std::vector<std::shared_ptr<Queue>> Broker::ListQueues() const {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<Queue>> out;
  out.reserve(queues_.size());
  for (const auto& [name, q] : queues_) out.push_back(q);
  return out;
}

Result<uint64_t> Broker::DeleteQueue(std::string_view name) {
  if (auto ok = ValidateQueueName(name); !ok.ok()) return ok.error();
  std::shared_ptr<Queue> victim;
  {
    std::lock_guard bindings(bindings_mu_);
    {
      std::lock_guard lock(mu_);
      auto it = queues_.find(name);
      if (it == queues_.end()) {
        return Error{Errc::kQueueNotFound, "queue '" + std::string(name) + "' does not exist"};
      }
      for (const auto& [other, q] : queues_) {
        if (q->config().dead_letter_queue == name) {
          return Error{Errc::kDeadLetterInUse, "queue '" + std::string(name) +
                                                   "' is the dead-letter queue of '" + other +
                                                   "'; delete that queue first"};
        }
      }
      for (const auto& [other, dead_letter] : creating_) {
        if (dead_letter == name) {
          return Error{Errc::kDeadLetterInUse, "queue '" + std::string(name) +
                                                   "' is the dead-letter queue of '" + other +
                                                   "', being created"};
        }
      }
      victim = std::move(it->second);
      queues_.erase(it);
      if (victim->config().durable) deleting_.insert(victim->name());
    }
    // Not under mu_: lookups go on while the router works.
    router_.RemoveBindingsTo(victim->name());
  }
  const uint64_t dropped = victim->Delete();  // its journal writes nothing after this
  if (victim->config().durable) {
    store_->Remove(victim->name());
    std::lock_guard lock(mu_);
    deleting_.erase(victim->name());
  }
  return dropped;
}

void Broker::Shutdown() {
  std::vector<std::shared_ptr<Queue>> all;
  {
    std::lock_guard lock(mu_);
    shutting_down_ = true;
    for (const auto& [name, q] : queues_) all.push_back(q);
  }
  for (auto& q : all) q->Shutdown();
  router_.Shutdown();
}

std::shared_ptr<Queue> Broker::Registered(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = queues_.find(name);
  return it == queues_.end() ? nullptr : it->second;
}

Result<bool> Broker::BindQueue(const std::string& pattern, const std::string& queue) {
  if (auto ok = ValidateQueueName(queue); !ok.ok()) return ok.error();
  // bindings_mu_ keeps DeleteQueue from removing the queue's bindings between
  // the lookup and the bind; mu_ is held only for the lookup.
  std::lock_guard bindings(bindings_mu_);
  std::shared_ptr<Queue> target = Registered(queue);
  if (target == nullptr) return Error{Errc::kQueueNotFound, "queue '" + queue + "' does not exist"};
  auto bound = router_.Bind(pattern, target);
  if (bound.ok() && bound.value()) target->RecordBinding(pattern, true);
  return bound;
}

Result<void> Broker::UnbindQueue(const std::string& pattern, const std::string& queue) {
  if (auto ok = ValidateQueueName(queue); !ok.ok()) return ok.error();
  std::lock_guard bindings(bindings_mu_);
  auto unbound = router_.Unbind(pattern, queue);
  if (std::shared_ptr<Queue> target = Registered(queue); unbound.ok() && target != nullptr) {
    target->RecordBinding(pattern, false);
  }
  return unbound;
}

}  // namespace basin::core
