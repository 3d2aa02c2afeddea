#include "broker/core/queue.h"

#include <algorithm>

#include "broker/core/delivery_tag.h"

namespace basin::core {
namespace {

// How many ended leases a queue remembers to explain a late TaskDone. Older
// ones still fail, as LEASE_EXPIRED rather than ALREADY_DONE.
constexpr size_t kEndedLeasesKept = 65'536;

constexpr std::string_view kDeadLetterReasonLimit = "delivery_limit";

}  // namespace

Queue::Queue(QueueConfig config, uint64_t incarnation, QueueLimits limits, MemoryBudget* memory,
             DeadlineScheduler* scheduler, std::shared_ptr<Queue> dead_letter)
    : config_(std::move(config)),
      incarnation_(incarnation),
      limits_(limits),
      memory_(memory),
      scheduler_(scheduler),
      dead_letter_(std::move(dead_letter)) {}

Queue::~Queue() {
  // Messages still held are released from the broker's budget.
  uint64_t bytes = ready_bytes_;
  for (const auto& [id, lease] : leases_) bytes += lease.msg->bytes();
  if (memory_ != nullptr && bytes > 0) memory_->Release(bytes, Clock::now());
}

std::string Queue::Describe() const { return "queue '" + config_.name + "'"; }

Duration Queue::EffectiveVisibility(Duration requested) const {
  Duration v = requested > Duration::zero() ? requested : config_.visibility_timeout;
  return std::min(v, limits_.max_lease);
}

Result<void> Queue::CheckCanWait(TimePoint now, TimePoint deadline) const {
  if (deleted_) return Error{Errc::kQueueDeleted, Describe() + " was deleted"};
  if (deadline <= now) return {};
  if (shutting_down_) return Error{Errc::kShutdown, "broker is shutting down"};
  const size_t waiting = getters_.size() + putters_.size() + joiners_.size();
  if (waiting >= limits_.max_waiters) {
    return Error{Errc::kTooManyWaiters, Describe() + " has " + std::to_string(waiting) +
                                            " blocked calls (limit " +
                                            std::to_string(limits_.max_waiters) + ")"};
  }
  return {};
}

WaitId Queue::NewWaiter(TimePoint deadline) {
  const WaitId id = next_wait_id_++;
  wait_deadlines_.emplace(deadline, id);
  return id;
}

Queue::Room Queue::CheckRoom(uint64_t bytes, bool wait_for_memory) {
  if (config_.max_size != 0 && ready_.size() >= config_.max_size) return Room::kFull;
  if (config_.max_bytes != 0 && ready_bytes_ + bytes > config_.max_bytes) return Room::kFull;
  const bool reserved = wait_for_memory ? memory_->ReserveOrWait(bytes, weak_from_this())
                                        : memory_->TryReserve(bytes);
  return reserved ? Room::kYes : Room::kNoMemory;
}

uint64_t Queue::Enqueue(MessagePtr msg) {
  const uint64_t id = next_message_id_++;
  msg->set_id(id);
  ready_bytes_ += msg->bytes();
  ready_.push_back(std::move(msg));
  ++total_put_;
  return id;
}

Delivery Queue::Deliver(Duration visibility, TimePoint now) {
  MessagePtr msg = std::move(ready_.front());
  ready_.pop_front();
  ready_bytes_ -= msg->bytes();
  msg->add_delivery();
  const uint64_t lease = next_lease_++;
  const TimePoint expiry = AddSaturating(now, visibility);
  Delivery out{msg->id(),
               std::string(msg->payload()),
               msg->headers(),
               msg->delivery_count(),
               FormatDeliveryTag({incarnation_, lease}),
               visibility};
  leases_.emplace(lease, Lease{std::move(msg), expiry});
  lease_expiry_.emplace(expiry, lease);
  ++total_delivered_;
  return out;
}

void Queue::ServeWaiters(TimePoint now, Deferred& d) {
  for (bool progressed = true; progressed;) {
    progressed = false;
    while (!putters_.empty()) {
      auto it = putters_.begin();
      const Room room = CheckRoom(it->second.msg->bytes());
      if (room != Room::kYes) {
        it->second.blocked_on_memory = room == Room::kNoMemory;
        break;
      }
      const uint64_t id = Enqueue(std::move(it->second.msg));
      d.callbacks.push_back([cb = std::move(it->second.cb), id] { cb(id); });
      wait_deadlines_.erase({it->second.deadline, it->first});
      putters_.erase(it);
      progressed = true;
    }
    while (!getters_.empty() && !ready_.empty()) {
      auto it = getters_.begin();
      Delivery delivery = Deliver(it->second.visibility, now);
      d.callbacks.push_back([cb = std::move(it->second.cb), dv = std::move(delivery)]() mutable {
        cb(std::move(dv));
      });
      wait_deadlines_.erase({it->second.deadline, it->first});
      getters_.erase(it);
      progressed = true;
    }
  }
  if (closed_ && ready_.empty() && leases_.empty()) {
    const Error drained{Errc::kQueueDrained, Describe() + " is closed and drained"};
    for (auto& [id, g] : getters_) {
      wait_deadlines_.erase({g.deadline, id});
      d.callbacks.push_back([cb = std::move(g.cb), drained] { cb(drained); });
    }
    getters_.clear();
  }
  if (Unfinished() == 0) {
    for (auto& [id, j] : joiners_) {
      wait_deadlines_.erase({j.deadline, id});
      d.callbacks.push_back([cb = std::move(j.cb)] { cb(Result<void>()); });
    }
    joiners_.clear();
  }
}

void Queue::Put(std::string_view payload, const Headers& headers, TimePoint now, TimePoint deadline,
                WaitId* wait_id, PutCallback cb) {
  *wait_id = 0;
  auto valid = Message::Validate(payload, headers, limits_.max_message_bytes);
  if (!valid.ok()) return cb(valid.error());
  const uint64_t bytes = valid.value();
  if (config_.max_bytes != 0 && bytes > config_.max_bytes) {
    cb(Error{Errc::kMessageTooLarge, "message of " + std::to_string(bytes) + " bytes exceeds " +
                                         Describe() + "'s max_bytes of " +
                                         std::to_string(config_.max_bytes)});
    return;
  }
  MessagePtr msg = Message::Make(0, payload, headers);

  Deferred d;
  {
    std::lock_guard lock(mu_);
    auto answer = [&d, &cb](Result<uint64_t> r) {
      d.callbacks.push_back([cb = std::move(cb), r = std::move(r)] { cb(r); });
    };
    if (deleted_) {
      answer(Error{Errc::kQueueDeleted, Describe() + " was deleted"});
    } else if (closed_) {
      answer(Error{Errc::kQueueClosed, Describe() + " is closed"});
    } else if (const Room room = putters_.empty() ? CheckRoom(bytes) : Room::kFull;
               room == Room::kYes) {
      answer(Enqueue(std::move(msg)));
      ServeWaiters(now, d);
    } else if (auto can = CheckCanWait(now, deadline); !can.ok()) {
      answer(can.error());
    } else if (deadline <= now) {
      answer(NoRoomError(room == Room::kNoMemory));
    } else {
      const WaitId id = NewWaiter(deadline);
      *wait_id = id;
      putters_.emplace(id,
                       Putter{deadline, std::move(msg), std::move(cb), room == Room::kNoMemory});
    }
    ArmDeadline(d);
  }
  RunDeferred(d, now);
}

Error Queue::NoRoomError(bool memory) const {
  if (memory) {
    return Error{Errc::kBrokerMemory, "broker memory limit of " + std::to_string(memory_->limit()) +
                                          " bytes reached; " + Describe() +
                                          " cannot take the message"};
  }
  return Error{Errc::kQueueFull, Describe() + " is full (max_size " +
                                     std::to_string(config_.max_size) + ", max_bytes " +
                                     std::to_string(config_.max_bytes) + ")"};
}

void Queue::Get(Duration visibility, TimePoint now, TimePoint deadline, WaitId* wait_id,
                GetCallback cb) {
  *wait_id = 0;
  visibility = EffectiveVisibility(visibility);
  Deferred d;
  {
    std::lock_guard lock(mu_);
    if (!deleted_ && !ready_.empty() && getters_.empty()) {
      Delivery delivery = Deliver(visibility, now);
      d.callbacks.push_back(
          [cb = std::move(cb), dv = std::move(delivery)]() mutable { cb(std::move(dv)); });
      ServeWaiters(now, d);  // the freed slot may admit a blocked putter
    } else if (auto can = CheckCanWait(now, deadline); !can.ok()) {
      d.callbacks.push_back([cb = std::move(cb), e = can.error()] { cb(e); });
    } else if (closed_ && ready_.empty() && leases_.empty()) {
      d.callbacks.push_back([cb = std::move(cb), this] {
        cb(Error{Errc::kQueueDrained, Describe() + " is closed and drained"});
      });
    } else if (deadline <= now) {
      d.callbacks.push_back([cb = std::move(cb), this] {
        cb(Error{Errc::kQueueEmpty, Describe() + " is empty"});
      });
    } else {
      const WaitId id = NewWaiter(deadline);
      *wait_id = id;
      getters_.emplace(id, Getter{deadline, visibility, std::move(cb)});
    }
    ArmDeadline(d);
  }
  RunDeferred(d, now);
}

void Queue::Join(TimePoint now, TimePoint deadline, WaitId* wait_id, JoinCallback cb) {
  *wait_id = 0;
  Deferred d;
  {
    std::lock_guard lock(mu_);
    if (!deleted_ && Unfinished() == 0) {
      d.callbacks.push_back([cb = std::move(cb)] { cb(Result<void>()); });
    } else if (auto can = CheckCanWait(now, deadline); !can.ok()) {
      d.callbacks.push_back([cb = std::move(cb), e = can.error()] { cb(e); });
    } else if (deadline <= now) {
      d.callbacks.push_back([cb = std::move(cb), n = Unfinished(), this] {
        cb(Error{Errc::kJoinTimeout,
                 Describe() + " still has " + std::to_string(n) + " unfinished messages"});
      });
    } else {
      const WaitId id = NewWaiter(deadline);
      *wait_id = id;
      joiners_.emplace(id, Joiner{deadline, std::move(cb)});
    }
    ArmDeadline(d);
  }
  RunDeferred(d, now);
}

void Queue::Cancel(WaitId id) {
  if (id == 0) return;
  Deferred d;
  const Error cancelled{Errc::kCancelled, "call cancelled by the client"};
  {
    std::lock_guard lock(mu_);
    if (auto it = getters_.find(id); it != getters_.end()) {
      wait_deadlines_.erase({it->second.deadline, id});
      d.callbacks.push_back([cb = std::move(it->second.cb), cancelled] { cb(cancelled); });
      getters_.erase(it);
    } else if (auto it = putters_.find(id); it != putters_.end()) {
      wait_deadlines_.erase({it->second.deadline, id});
      d.callbacks.push_back([cb = std::move(it->second.cb), cancelled] { cb(cancelled); });
      putters_.erase(it);
    } else if (auto it = joiners_.find(id); it != joiners_.end()) {
      wait_deadlines_.erase({it->second.deadline, id});
      d.callbacks.push_back([cb = std::move(it->second.cb), cancelled] { cb(cancelled); });
      joiners_.erase(it);
    }
  }
  RunDeferred(d, Clock::now());
}

Result<uint64_t> Queue::FindLease(std::string_view tag) const {
  const auto parsed = ParseDeliveryTag(tag);
  if (!parsed) {
    return Error{Errc::kInvalidDeliveryTag,
                 "delivery tag '" + std::string(tag) + "' is malformed for " + Describe()};
  }
  if (parsed->incarnation != incarnation_ || parsed->lease == 0 || parsed->lease >= next_lease_) {
    return Error{Errc::kUnknownDelivery, "delivery tag '" + std::string(tag) +
                                             "' names no delivery of " + Describe() +
                                             " (wrong queue, or the queue was recreated)"};
  }
  if (leases_.count(parsed->lease) != 0) return parsed->lease;
  const auto it = ended_.find(parsed->lease);
  if (it != ended_.end() && it->second == LeaseEnd::kDone) {
    return Error{Errc::kAlreadyDone,
                 "delivery '" + std::string(tag) + "' of " + Describe() + " is already done"};
  }
  return Error{Errc::kLeaseExpired, "lease '" + std::string(tag) + "' on " + Describe() +
                                        " has ended (expired or released); the message may "
                                        "have been redelivered"};
}

void Queue::RecordEnded(uint64_t lease, LeaseEnd how) {
  ended_[lease] = how;
  ended_order_.push_back(lease);
  if (ended_order_.size() > kEndedLeasesKept) {
    ended_.erase(ended_order_.front());
    ended_order_.pop_front();
  }
}

void Queue::FinishMessage(MessagePtr msg, Deferred& d) { d.bytes_freed += msg->bytes(); }

void Queue::EndLease(uint64_t lease, LeaseEnd how, Deferred& d) {
  auto it = leases_.find(lease);
  MessagePtr msg = std::move(it->second.msg);
  lease_expiry_.erase({it->second.expiry, lease});
  leases_.erase(it);
  if (how == LeaseEnd::kDone) {
    RecordEnded(lease, how);
    ++total_done_;
    FinishMessage(std::move(msg), d);
    return;
  }
  if (config_.max_deliveries != 0 && msg->delivery_count() >= config_.max_deliveries) {
    RecordEnded(lease, LeaseEnd::kDeadLettered);
    ++total_dead_lettered_;
    d.bytes_freed += msg->bytes();
    if (dead_letter_ != nullptr) d.dead_letters.push_back(std::move(msg));
    return;
  }
  RecordEnded(lease, how);
  ++total_redelivered_;
  ready_bytes_ += msg->bytes();
  ready_.push_front(std::move(msg));  // requeues ignore max_size: the message was accepted
}

Result<void> Queue::TaskDone(std::string_view tag, TimePoint now) {
  Deferred d;
  Result<void> result;
  {
    std::lock_guard lock(mu_);
    auto lease = FindLease(tag);
    if (!lease.ok()) return lease.error();
    EndLease(lease.value(), LeaseEnd::kDone, d);
    ServeWaiters(now, d);
  }
  RunDeferred(d, now);
  return result;
}

Result<Duration> Queue::ExtendLease(std::string_view tag, Duration duration, TimePoint now) {
  if (duration <= Duration::zero()) {
    return Error{Errc::kInvalidTimeout, "lease extension must be positive"};
  }
  duration = std::min(duration, limits_.max_lease);
  Deferred d;
  {
    std::lock_guard lock(mu_);
    auto lease = FindLease(tag);
    if (!lease.ok()) return lease.error();
    Lease& l = leases_.at(lease.value());
    lease_expiry_.erase({l.expiry, lease.value()});
    l.expiry = AddSaturating(now, duration);
    lease_expiry_.emplace(l.expiry, lease.value());
    ArmDeadline(d);
  }
  RunDeferred(d, now);
  return duration;
}

Result<bool> Queue::Release(std::string_view tag, TimePoint now) {
  Deferred d;
  bool dead_lettered = false;
  {
    std::lock_guard lock(mu_);
    auto lease = FindLease(tag);
    if (!lease.ok()) return lease.error();
    const uint64_t before = total_dead_lettered_;
    EndLease(lease.value(), LeaseEnd::kReleased, d);
    dead_lettered = total_dead_lettered_ != before;
    ServeWaiters(now, d);
    ArmDeadline(d);
  }
  RunDeferred(d, now);
  return dead_lettered;
}

bool Queue::Close(TimePoint now) {
  Deferred d;
  bool already = false;
  {
    std::lock_guard lock(mu_);
    already = closed_;
    closed_ = true;
    for (auto& [id, p] : putters_) {
      wait_deadlines_.erase({p.deadline, id});
      d.callbacks.push_back([cb = std::move(p.cb), this] {
        cb(Error{Errc::kQueueClosed, Describe() + " was closed while the put waited"});
      });
    }
    putters_.clear();
    ServeWaiters(now, d);
  }
  RunDeferred(d, now);
  return already;
}

void Queue::FailAllWaiters(Errc code, const std::string& message, Deferred& d) {
  const Error e{code, message};
  for (auto& [id, g] : getters_) d.callbacks.push_back([cb = std::move(g.cb), e] { cb(e); });
  for (auto& [id, p] : putters_) d.callbacks.push_back([cb = std::move(p.cb), e] { cb(e); });
  for (auto& [id, j] : joiners_) d.callbacks.push_back([cb = std::move(j.cb), e] { cb(e); });
  getters_.clear();
  putters_.clear();
  joiners_.clear();
  wait_deadlines_.clear();
}

uint64_t Queue::Delete() {
  Deferred d;
  uint64_t dropped = 0;
  {
    std::lock_guard lock(mu_);
    deleted_ = true;
    FailAllWaiters(Errc::kQueueDeleted, Describe() + " was deleted", d);
    dropped = ready_.size() + leases_.size();
    d.bytes_freed += ready_bytes_;
    for (const auto& [id, lease] : leases_) d.bytes_freed += lease.msg->bytes();
    ready_.clear();
    ready_bytes_ = 0;
    leases_.clear();
    lease_expiry_.clear();
  }
  RunDeferred(d, Clock::now());
  return dropped;
}

void Queue::Shutdown() {
  Deferred d;
  {
    std::lock_guard lock(mu_);
    shutting_down_ = true;
    FailAllWaiters(Errc::kShutdown, "broker is shutting down", d);
  }
  RunDeferred(d, Clock::now());
}

Result<uint64_t> Queue::Offer(std::string_view payload, const Headers& headers, TimePoint now) {
  const uint64_t bytes = Message::AccountedBytes(payload, headers);
  Deferred d;
  Result<uint64_t> result = Error{Errc::kQueueFull, {}};
  {
    std::lock_guard lock(mu_);
    if (deleted_) {
      result = Error{Errc::kQueueDeleted, Describe() + " was deleted"};
    } else if (closed_) {
      result = Error{Errc::kQueueClosed, Describe() + " is closed"};
    } else if (config_.max_bytes != 0 && bytes > config_.max_bytes) {
      result = Error{Errc::kMessageTooLarge,
                     "message of " + std::to_string(bytes) + " bytes exceeds " + Describe() +
                         "'s max_bytes of " + std::to_string(config_.max_bytes)};
    } else if (const Room room = putters_.empty() ? CheckRoom(bytes, false) : Room::kFull;
               room != Room::kYes) {
      result = NoRoomError(room == Room::kNoMemory);
    } else {
      result = Enqueue(Message::Make(0, payload, headers));
      ServeWaiters(now, d);
      ArmDeadline(d);
    }
    if (!result.ok()) ++total_rejected_;
  }
  RunDeferred(d, now);
  return result;
}

void Queue::AcceptDeadLetter(MessagePtr msg, TimePoint now) {
  Deferred d;
  {
    std::lock_guard lock(mu_);
    if (deleted_) return;
    memory_->ForceReserve(msg->bytes());
    Enqueue(std::move(msg));
    ServeWaiters(now, d);
    ArmDeadline(d);
  }
  RunDeferred(d, now);
}

QueueStats Queue::Stats() const {
  std::lock_guard lock(mu_);
  QueueStats s;
  s.size = ready_.size();
  s.bytes = ready_bytes_;
  s.full = config_.max_size != 0 && ready_.size() >= config_.max_size;
  s.empty = ready_.empty();
  s.in_flight = leases_.size();
  s.unfinished = Unfinished();
  s.waiting_getters = getters_.size();
  s.waiting_putters = putters_.size();
  s.waiting_joiners = joiners_.size();
  s.total_put = total_put_;
  s.total_delivered = total_delivered_;
  s.total_done = total_done_;
  s.total_redelivered = total_redelivered_;
  s.total_dead_lettered = total_dead_lettered_;
  s.total_rejected = total_rejected_;
  s.closed = closed_;
  return s;
}

TimePoint Queue::NextDeadline() const {
  TimePoint next = kNever;
  if (!wait_deadlines_.empty()) next = wait_deadlines_.begin()->first;
  if (!lease_expiry_.empty()) next = std::min(next, lease_expiry_.begin()->first);
  return next;
}

void Queue::ArmDeadline(Deferred& d) {
  const TimePoint next = NextDeadline();
  if (next < scheduled_) {
    scheduled_ = next;
    d.schedule = next;
  }
}

TimePoint Queue::ExpireDue(TimePoint now) {
  Deferred d;
  TimePoint next = kNever;
  {
    std::lock_guard lock(mu_);
    while (!wait_deadlines_.empty() && wait_deadlines_.begin()->first <= now) {
      const WaitId id = wait_deadlines_.begin()->second;
      wait_deadlines_.erase(wait_deadlines_.begin());
      if (auto it = getters_.find(id); it != getters_.end()) {
        d.callbacks.push_back([cb = std::move(it->second.cb), this] {
          cb(Error{Errc::kQueueEmpty, Describe() + " stayed empty until the deadline"});
        });
        getters_.erase(it);
      } else if (auto it = putters_.find(id); it != putters_.end()) {
        Error e = NoRoomError(it->second.blocked_on_memory);
        d.callbacks.push_back([cb = std::move(it->second.cb), e] { cb(e); });
        putters_.erase(it);
      } else if (auto it = joiners_.find(id); it != joiners_.end()) {
        d.callbacks.push_back([cb = std::move(it->second.cb), n = Unfinished(), this] {
          cb(Error{Errc::kJoinTimeout, Describe() + " still had " + std::to_string(n) +
                                           " unfinished messages at the deadline"});
        });
        joiners_.erase(it);
      }
    }
    std::vector<uint64_t> expired;
    for (auto it = lease_expiry_.begin(); it != lease_expiry_.end() && it->first <= now; ++it) {
      expired.push_back(it->second);
    }
    // Each requeue goes to the head, so the last one requeued is delivered first:
    // walk backwards to keep the expired messages in the order they were leased.
    for (auto it = expired.rbegin(); it != expired.rend(); ++it) {
      EndLease(*it, LeaseEnd::kExpired, d);
    }
    ServeWaiters(now, d);
    // The timer that called us is spent; the caller schedules the next one.
    next = NextDeadline();
    scheduled_ = next;
  }
  RunDeferred(d, now);
  return next;
}

void Queue::OnMemoryFreed(TimePoint now) {
  Deferred d;
  {
    std::lock_guard lock(mu_);
    ServeWaiters(now, d);
    ArmDeadline(d);
  }
  RunDeferred(d, now);
}

void Queue::RunDeferred(Deferred& d, TimePoint now) {
  for (auto& cb : d.callbacks) cb();
  for (auto& msg : d.dead_letters) {
    Headers headers = msg->headers();
    headers[std::string(kHeaderDeadLetterReason)] = std::string(kDeadLetterReasonLimit);
    headers[std::string(kHeaderOriginalQueue)] = config_.name;
    headers[std::string(kHeaderOriginalId)] = std::to_string(msg->id());
    dead_letter_->AcceptDeadLetter(Message::Make(0, msg->payload(), headers), now);
  }
  memory_->Release(d.bytes_freed, now);
  if (d.schedule != kNever && scheduler_ != nullptr)
    scheduler_->ScheduleAt(weak_from_this(), d.schedule);
}

}  // namespace basin::core
