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
             DeadlineScheduler* scheduler, std::shared_ptr<Queue> dead_letter,
             std::shared_ptr<QueueJournal> journal)
    : config_(std::move(config)),
      incarnation_(incarnation),
      limits_(limits),
      memory_(memory),
      scheduler_(scheduler),
      dead_letter_(std::move(dead_letter)),
      journal_(std::move(journal)) {}

Queue::~Queue() {
  // Messages still held are released from the broker's budget.
  uint64_t bytes = ready_bytes_ + pending_bytes_;
  for (const auto& [id, lease] : leases_) bytes += lease.msg->bytes();
  for (const auto& [id, consumer] : consumers_) bytes += consumer.held.bytes();
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

Queue::Room Queue::CheckRoom(uint64_t bytes, bool wait_for_memory, size_t count) {
  if (count == 0) return Room::kYes;
  if (config_.max_size != 0 && ready_.size() + pending_count_ + count > config_.max_size) {
    return Room::kFull;
  }
  if (config_.max_bytes != 0 && ready_bytes_ + pending_bytes_ + bytes > config_.max_bytes) {
    return Room::kFull;
  }
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

uint64_t Queue::EnqueueOrJournal(MessagePtr msg, QueueJournal::Committed written) {
  if (journal_ == nullptr) return Enqueue(std::move(msg));
  const uint64_t id = next_message_id_++;
  msg->set_id(id);
  PendingBatch batch;
  if (written) {
    batch.cb = [written = std::move(written)](Result<std::vector<PutResult>> r) {
      written(r.ok() ? std::nullopt : std::optional<Error>(r.error()));
    };
  }
  batch.bytes = msg->bytes();
  batch.msgs.push_back(std::move(msg));
  Journal(std::move(batch));
  return id;
}

void Queue::Journal(PendingBatch batch) {
  batch.seq = next_batch_++;
  pending_count_ += batch.msgs.size();
  pending_bytes_ += batch.bytes;
  std::vector<const Message*> records;
  records.reserve(batch.msgs.size());
  for (const MessagePtr& m : batch.msgs) records.push_back(m.get());
  journal_->Put(records, batch.keys,
                [weak = weak_from_this(), seq = batch.seq](std::optional<Error> error) {
                  if (auto queue = weak.lock()) queue->OnCommitted(seq, std::move(error));
                });
  pending_.push_back(std::move(batch));
}

void Queue::OnCommitted(uint64_t seq, std::optional<Error> error) {
  const TimePoint now = Clock::now();
  Deferred d;
  {
    std::lock_guard lock(mu_);
    auto it = std::find_if(pending_.begin(), pending_.end(),
                           [seq](const PendingBatch& b) { return b.seq == seq; });
    if (it == pending_.end()) return;  // the queue was deleted meanwhile
    it->resolved = true;
    it->error = std::move(error);
    // Batches become ready in admission order, whatever order their writes
    // were confirmed in.
    while (!pending_.empty() && pending_.front().resolved) {
      PendingBatch b = std::move(pending_.front());
      pending_.pop_front();
      pending_count_ -= b.msgs.size();
      pending_bytes_ -= b.bytes;
      if (b.error) {
        for (const auto& [dedup, id] : b.keys.dedup_ids) {
          auto found = dedup_.find(dedup);
          if (found != dedup_.end() && found->second.first == id) dedup_.erase(found);
        }
        if (!b.keys.sequences.empty()) {
          sequences_.Get(b.keys.producer, now).Forget(b.keys.sequences.front().first);
        }
        d.bytes_freed += b.bytes;
        if (b.cb) d.callbacks.push_back([cb = std::move(b.cb), e = *b.error] { cb(e); });
        continue;
      }
      for (MessagePtr& m : b.msgs) {
        ready_bytes_ += m->bytes();
        ready_.push_back(std::move(m));
        ++total_put_;
      }
      if (b.cb) {
        d.callbacks.push_back(
            [cb = std::move(b.cb), r = std::move(b.results)]() mutable { cb(std::move(r)); });
      }
    }
    ServeWaiters(now, d);
    ArmDeadline(d);
  }
  RunDeferred(d, now);
}

void Queue::Restore(std::vector<MessagePtr> messages, uint64_t next_id, bool closed,
                    const std::vector<PutKeys>& keys, TimePoint now) {
  Deferred d;
  {
    std::lock_guard lock(mu_);
    next_message_id_ = std::max(next_message_id_, next_id);
    closed_ = closed;
    // Remembered from now on for the dedup window: the restart does not
    // shorten it.
    for (const PutKeys& k : keys) {
      for (const auto& [dedup, id] : k.dedup_ids) RecordDedup(dedup, id, now);
      if (k.producer.empty()) continue;
      ProducerSequences::Producer& producer = sequences_.Get(k.producer, now);
      for (const auto& [sequence, id] : k.sequences) producer.Record(sequence, id);
    }
    for (MessagePtr& m : messages) {
      memory_->ForceReserve(m->bytes());
      if (OutOfDeliveries(*m)) {
        DeadLetter(std::move(m), d);
        continue;
      }
      ready_bytes_ += m->bytes();
      ready_.push_back(std::move(m));
    }
  }
  RunDeferred(d, now);
}

void Queue::RecordBinding(const std::string& pattern, bool bound) {
  if (journal_ != nullptr) journal_->Binding(pattern, bound);
}

MessagePtr Queue::TakeReady(Deferred& d) {
  MessagePtr msg = std::move(ready_.front());
  ready_.pop_front();
  ready_bytes_ -= msg->bytes();
  msg->add_delivery();
  if (journal_ != nullptr) d.delivered.push_back(msg->id());
  ++total_delivered_;
  return msg;
}

Delivery Queue::Deliver(Duration visibility, TimePoint now, Deferred& d) {
  MessagePtr msg = TakeReady(d);
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
  return out;
}

void Queue::ServeWaiters(TimePoint now, Deferred& d) {
  for (bool progressed = true; progressed;) {
    progressed = false;
    while (!putters_.empty()) {
      auto it = putters_.begin();
      const Room room = TryAdmit(it->second, now, d);
      if (room != Room::kYes) {
        it->second.blocked_on_memory = room == Room::kNoMemory;
        break;
      }
      wait_deadlines_.erase({it->second.deadline, it->first});
      putters_.erase(it);
      progressed = true;
    }
    while (!getters_.empty() && !ready_.empty()) {
      auto it = getters_.begin();
      if (it->second.consumer != 0) {
        ServeConsumer(it->second.consumer, now, d);
        progressed = true;
        continue;
      }
      std::vector<Delivery> batch = DeliverBatch(it->second, now, d);
      d.callbacks.push_back(
          [cb = std::move(it->second.cb), b = std::move(batch)]() mutable { cb(std::move(b)); });
      wait_deadlines_.erase({it->second.deadline, it->first});
      getters_.erase(it);
      progressed = true;
    }
  }
  if (Drained()) {
    const Error drained{Errc::kQueueDrained, Describe() + " is closed and drained"};
    EndConsumers(drained, d);
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
  std::vector<MessageSpec> one{{payload, &headers, {}}};
  PutBatch(one, now, deadline, wait_id, [cb = std::move(cb)](Result<std::vector<PutResult>> r) {
    if (!r.ok()) return cb(r.error());
    PutResult& only = r.value().front();
    if (only.error) return cb(*only.error);
    cb(only.message_id);
  });
}

std::optional<uint64_t> Queue::FindDedup(const std::string& dedup_id, TimePoint now) {
  auto it = dedup_.find(dedup_id);
  if (it == dedup_.end() || now - it->second.second > limits_.dedup_window) return std::nullopt;
  return it->second.first;
}

void Queue::RecordDedup(const std::string& dedup_id, uint64_t id, TimePoint now) {
  // Forget ids older than the window, and the oldest beyond the cap.
  while (!dedup_order_.empty() && (now - dedup_order_.front().first > limits_.dedup_window ||
                                   dedup_order_.size() >= limits_.max_dedup_ids)) {
    auto it = dedup_.find(dedup_order_.front().second);
    if (it != dedup_.end() && it->second.second == dedup_order_.front().first) dedup_.erase(it);
    dedup_order_.pop_front();
  }
  dedup_[dedup_id] = {id, now};
  dedup_order_.emplace_back(now, dedup_id);
}

Queue::Room Queue::TryAdmit(Putter& p, TimePoint now, Deferred& d) {
  // Duplicates first: a dedup id seen before, or earlier in this batch, is
  // answered with the original id and takes no room.
  std::unordered_map<std::string_view, size_t> first_in_batch;
  std::vector<std::pair<size_t, size_t>> copies;  // (msg index, index of its first)
  ProducerSequences::Producer* origin =
      p.producer.empty() ? nullptr : &sequences_.Get(p.producer, now);
  size_t count = 0;
  uint64_t bytes = 0;
  for (size_t i = 0; i < p.msgs.size(); ++i) {
    if (p.msgs[i] == nullptr) continue;
    if (origin != nullptr) {
      if (auto original = origin->Find(p.first_sequence + p.slots[i])) {
        p.results[p.slots[i]].message_id = *original;
        p.results[p.slots[i]].duplicate = true;
        p.msgs[i].reset();
        continue;
      }
    }
    const std::string& dedup = p.dedup_ids[i];
    if (!dedup.empty()) {
      if (auto original = FindDedup(dedup, now)) {
        p.results[p.slots[i]].message_id = *original;
        p.results[p.slots[i]].duplicate = true;
        p.msgs[i].reset();
        continue;
      }
      auto [it, fresh] = first_in_batch.emplace(dedup, i);
      if (!fresh) {
        copies.emplace_back(i, it->second);
        continue;
      }
    }
    ++count;
    bytes += p.msgs[i]->bytes();
  }
  const Room room = CheckRoom(bytes, true, count);
  if (room != Room::kYes) return room;
  for (const auto& [copy, first] : copies) p.msgs[copy].reset();
  PendingBatch durable;  // a durable queue's admitted messages
  for (size_t i = 0; i < p.msgs.size(); ++i) {
    if (p.msgs[i] == nullptr) continue;
    uint64_t id = 0;
    if (journal_ == nullptr) {
      id = Enqueue(std::move(p.msgs[i]));
    } else {
      id = next_message_id_++;
      p.msgs[i]->set_id(id);
      if (origin != nullptr) durable.keys.sequences.emplace_back(p.first_sequence + p.slots[i], id);
      if (!p.dedup_ids[i].empty()) durable.keys.dedup_ids.emplace_back(p.dedup_ids[i], id);
      durable.msgs.push_back(std::move(p.msgs[i]));
    }
    p.results[p.slots[i]].message_id = id;
    if (!p.dedup_ids[i].empty()) RecordDedup(p.dedup_ids[i], id, now);
    if (origin != nullptr) origin->Record(p.first_sequence + p.slots[i], id);
  }
  for (const auto& [copy, first] : copies) {
    p.results[p.slots[copy]].message_id = p.results[p.slots[first]].message_id;
    p.results[p.slots[copy]].duplicate = true;
  }
  if (durable.msgs.empty()) {
    d.callbacks.push_back(
        [cb = std::move(p.cb), r = std::move(p.results)]() mutable { cb(std::move(r)); });
    return Room::kYes;
  }
  durable.bytes = bytes;
  durable.cb = std::move(p.cb);  // answered once written
  durable.results = std::move(p.results);
  if (!durable.keys.sequences.empty()) durable.keys.producer = p.producer;
  Journal(std::move(durable));
  if (p.admitted) d.callbacks.push_back(std::move(p.admitted));
  return Room::kYes;
}

void Queue::PutBatch(const std::vector<MessageSpec>& batch, TimePoint now, TimePoint deadline,
                     WaitId* wait_id, PutBatchCallback cb, BatchOrigin origin,
                     std::function<void()> admitted) {
  *wait_id = 0;
  static const Headers kNoHeaders;
  Putter p;
  p.deadline = deadline;
  p.producer = origin.producer;
  p.first_sequence = origin.first_sequence;
  p.results.resize(batch.size());
  uint64_t total = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    const Headers& headers = batch[i].headers != nullptr ? *batch[i].headers : kNoHeaders;
    auto valid = Message::Validate(batch[i].payload, headers, limits_.max_message_bytes);
    if (valid.ok()) {
      if (auto too_large = TooLargeForQueue(valid.value())) valid = *too_large;
    }
    if (!valid.ok()) {
      p.results[i].error = valid.error();
      continue;
    }
    total += valid.value();
    p.msgs.push_back(Message::Make(0, batch[i].payload, headers));
    p.dedup_ids.push_back(batch[i].dedup_id);
    p.slots.push_back(i);
  }
  if ((config_.max_size != 0 && p.msgs.size() > config_.max_size) ||
      (config_.max_bytes != 0 && total > config_.max_bytes)) {
    return cb(Error{Errc::kInvalidArgument,
                    "a batch of " + std::to_string(p.msgs.size()) + " messages / " +
                        std::to_string(total) + " bytes can never fit " + Describe() +
                        " (max_size " + std::to_string(config_.max_size) + ", max_bytes " +
                        std::to_string(config_.max_bytes) + ")"});
  }
  p.cb = std::move(cb);
  p.admitted = std::move(admitted);

  Deferred d;
  {
    std::lock_guard lock(mu_);
    auto answer = [&d, &p](Result<std::vector<PutResult>> r) {
      d.callbacks.push_back(
          [cb = std::move(p.cb), r = std::move(r)]() mutable { cb(std::move(r)); });
    };
    Room room = Room::kFull;
    if (deleted_) {
      answer(Error{Errc::kQueueDeleted, Describe() + " was deleted"});
    } else if (closed_) {
      answer(Error{Errc::kQueueClosed, Describe() + " is closed"});
    } else if (room = putters_.empty() ? TryAdmit(p, now, d) : Room::kFull; room == Room::kYes) {
      ServeWaiters(now, d);
    } else if (auto can = CheckCanWait(now, deadline); !can.ok()) {
      answer(can.error());
    } else if (deadline <= now) {
      answer(NoRoomError(room == Room::kNoMemory));
    } else {
      const WaitId id = NewWaiter(deadline);
      *wait_id = id;
      p.blocked_on_memory = room == Room::kNoMemory;
      putters_.emplace(id, std::move(p));
    }
    ArmDeadline(d);
  }
  RunDeferred(d, now);
}

std::optional<Error> Queue::TooLargeForQueue(uint64_t bytes) const {
  if (config_.max_bytes == 0 || bytes <= config_.max_bytes) return std::nullopt;
  return Error{Errc::kMessageTooLarge, "message of " + std::to_string(bytes) + " bytes exceeds " +
                                           Describe() + "'s max_bytes of " +
                                           std::to_string(config_.max_bytes)};
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
  GetBatch(1, 0, visibility, now, deadline, wait_id,
           [cb = std::move(cb)](Result<std::vector<Delivery>> r) {
             if (!r.ok()) return cb(r.error());
             cb(std::move(r.value().front()));
           });
}

std::vector<Delivery> Queue::DeliverBatch(const Getter& g, TimePoint now, Deferred& d) {
  std::vector<Delivery> out;
  uint64_t bytes = 0;
  while (!ready_.empty() && out.size() < g.max_messages &&
         (out.empty() || bytes + ready_.front()->bytes() <= g.max_bytes)) {
    bytes += ready_.front()->bytes();
    out.push_back(Deliver(g.visibility, now, d));
  }
  return out;
}

void Queue::GetBatch(size_t max_messages, uint64_t max_bytes, Duration visibility, TimePoint now,
                     TimePoint deadline, WaitId* wait_id, GetBatchCallback cb) {
  *wait_id = 0;
  Getter g{deadline, EffectiveVisibility(visibility), std::max<size_t>(max_messages, 1), max_bytes,
           std::move(cb)};
  Deferred d;
  {
    std::lock_guard lock(mu_);
    auto answer = [&d, &g](Result<std::vector<Delivery>> r) {
      d.callbacks.push_back(
          [cb = std::move(g.cb), r = std::move(r)]() mutable { cb(std::move(r)); });
    };
    if (!deleted_ && !ready_.empty() && getters_.empty()) {
      answer(DeliverBatch(g, now, d));
      ServeWaiters(now, d);  // the freed slots may admit blocked putters
    } else if (auto can = CheckCanWait(now, deadline); !can.ok()) {
      answer(can.error());
    } else if (Drained()) {
      answer(Error{Errc::kQueueDrained, Describe() + " is closed and drained"});
    } else if (deadline <= now) {
      answer(Error{Errc::kQueueEmpty, Describe() + " is empty"});
    } else {
      const WaitId id = NewWaiter(deadline);
      *wait_id = id;
      getters_.emplace(id, std::move(g));
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
  if (leases_.contains(parsed->lease)) return parsed->lease;
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

void Queue::EndLease(uint64_t lease, LeaseEnd how, Deferred& d) {
  auto it = leases_.find(lease);
  MessagePtr msg = std::move(it->second.msg);
  lease_expiry_.erase({it->second.expiry, lease});
  leases_.erase(it);
  Settle(std::move(msg), lease, how, d);
}

void Queue::EndHeld(ConsumerState& c, std::vector<HeldDeliveries::Taken> taken, LeaseEnd how,
                    Deferred& d) {
  stream_held_ -= taken.size();
  if (how == LeaseEnd::kDone) c.acked += taken.size();
  // Requeues go to the head: the last one requeued is delivered first, so walk
  // backwards to keep them in the order they were delivered.
  for (auto it = taken.rbegin(); it != taken.rend(); ++it) {
    if (how == LeaseEnd::kExpired && c.outbox->PushExpired(it->tag)) d.wakes.push_back(c.outbox);
    Settle(std::move(it->msg), 0, how, d);
  }
}

void Queue::Settle(MessagePtr msg, uint64_t lease, LeaseEnd how, Deferred& d) {
  if (how == LeaseEnd::kDone) {
    if (lease != 0) RecordEnded(lease, how);
    ++total_done_;
    d.bytes_freed += msg->bytes();
    if (journal_ != nullptr) d.done.push_back(msg->id());
    return;
  }
  if (OutOfDeliveries(*msg)) {
    if (lease != 0) RecordEnded(lease, LeaseEnd::kDeadLettered);
    DeadLetter(std::move(msg), d);
    return;
  }
  if (lease != 0) RecordEnded(lease, how);
  ++total_redelivered_;
  ready_bytes_ += msg->bytes();
  ready_.push_front(std::move(msg));  // requeues ignore max_size: the message was accepted
}

bool Queue::OutOfDeliveries(const Message& msg) const {
  return config_.max_deliveries != 0 && msg.delivery_count() >= config_.max_deliveries;
}

void Queue::DeadLetter(MessagePtr msg, Deferred& d) {
  ++total_dead_lettered_;
  d.bytes_freed += msg->bytes();
  if (journal_ != nullptr) d.done.push_back(msg->id());
  if (dead_letter_ != nullptr) d.dead_letters.push_back(std::move(msg));
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
    if (!already && journal_ != nullptr) journal_->Closed(nullptr);
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
    EndConsumers(Error{Errc::kQueueDeleted, Describe() + " was deleted"}, d);
    FailAllWaiters(Errc::kQueueDeleted, Describe() + " was deleted", d);
    dropped = ready_.size() + leases_.size();  // consumers' holdings are back in ready_
    // Durable puts still being written are refused: the queue is gone.
    for (PendingBatch& b : pending_) {
      if (b.cb)
        d.callbacks.push_back([cb = std::move(b.cb), this] {
          cb(Error{Errc::kQueueDeleted, Describe() + " was deleted"});
        });
    }
    pending_.clear();
    d.bytes_freed += ready_bytes_ + pending_bytes_;
    pending_count_ = 0;
    pending_bytes_ = 0;
    d.delivered.clear();
    d.done.clear();
    for (const auto& [id, lease] : leases_) d.bytes_freed += lease.msg->bytes();
    ready_.clear();
    ready_bytes_ = 0;
    leases_.clear();
    lease_expiry_.clear();
  }
  if (journal_ != nullptr) journal_->Deleted();
  RunDeferred(d, Clock::now());
  return dropped;
}

void Queue::Shutdown() {
  Deferred d;
  {
    std::lock_guard lock(mu_);
    shutting_down_ = true;
    EndConsumers(Error{Errc::kShutdown, "broker is shutting down"}, d);
    FailAllWaiters(Errc::kShutdown, "broker is shutting down", d);
  }
  RunDeferred(d, Clock::now());
}

void Queue::TakeTurn(uint64_t consumer, ConsumerState& c) {
  if (c.turn != 0 || c.held.size() >= c.prefetch) return;
  c.turn = next_wait_id_++;
  if (c.spare_turn.empty()) {
    getters_.emplace(c.turn, Getter{kNever, {}, 1, 0, nullptr, consumer});
  } else {
    c.spare_turn.key() = c.turn;
    getters_.insert(std::move(c.spare_turn));
  }
  ++consumer_turns_;
}

void Queue::ServeConsumer(uint64_t consumer, TimePoint now, Deferred& d) {
  ConsumerState& c = consumers_.at(consumer);
  c.spare_turn = getters_.extract(c.turn);
  c.turn = 0;
  --consumer_turns_;
  // One message a turn: consumers and blocked Gets share the queue fairly.
  MessagePtr msg = TakeReady(d);
  Delivery delivery{
      msg->id(),    std::string(msg->payload()), msg->headers(), msg->delivery_count(), {},
      c.ack_timeout};
  const TimePoint expiry =
      c.ack_timeout > Duration::zero() ? AddSaturating(now, c.ack_timeout) : kNever;
  const uint64_t tag = c.held.Add(std::move(msg), expiry);
  ++stream_held_;
  ++c.delivered;
  if (c.outbox->Push({tag, std::move(delivery)})) d.wakes.push_back(c.outbox);
  TakeTurn(consumer, c);
}

void Queue::ReleaseConsumer(ConsumerState& c, Error why, Deferred& d) {
  if (c.turn != 0) {
    getters_.erase(c.turn);
    --consumer_turns_;
  }
  EndHeld(c, c.held.TakeUpTo(UINT64_MAX), LeaseEnd::kReleased, d);
  if (c.outbox->End(std::move(why))) d.wakes.push_back(c.outbox);
}

void Queue::EndConsumers(const Error& why, Deferred& d) {
  std::map<uint64_t, ConsumerState> all;
  all.swap(consumers_);
  for (auto& [id, c] : all) ReleaseConsumer(c, why, d);
}

Result<Queue::Attached> Queue::AttachConsumer(uint32_t prefetch, Duration ack_timeout,
                                              std::function<void()> wake, TimePoint now) {
  Deferred d;
  Attached out;
  {
    std::lock_guard lock(mu_);
    if (deleted_) return Error{Errc::kQueueDeleted, Describe() + " was deleted"};
    if (shutting_down_) return Error{Errc::kShutdown, "broker is shutting down"};
    if (Drained()) {
      return Error{Errc::kQueueDrained, Describe() + " is closed and drained"};
    }
    out.id = next_consumer_++;
    out.outbox = std::make_shared<ConsumerOutbox>(std::move(wake));
    ConsumerState& c = consumers_[out.id];
    c.prefetch = prefetch;
    c.ack_timeout = ack_timeout;
    c.outbox = out.outbox;
    TakeTurn(out.id, c);
    ServeWaiters(now, d);
    ArmDeadline(d);
  }
  RunDeferred(d, now);
  return out;
}

void Queue::EndConsumerLeases(uint64_t consumer, const std::vector<uint64_t>& tags, uint64_t up_to,
                              bool done, TimePoint now) {
  Deferred d;
  {
    std::lock_guard lock(mu_);
    auto c = consumers_.find(consumer);
    if (c == consumers_.end()) return;
    ConsumerState& state = c->second;
    std::vector<HeldDeliveries::Taken> taken;
    std::vector<uint64_t> unknown;
    for (uint64_t tag : tags) {
      if (MessagePtr msg = state.held.Take(tag)) {
        taken.push_back({tag, std::move(msg)});
      } else {
        unknown.push_back(tag);
      }
    }
    for (auto& t : state.held.TakeUpTo(up_to)) taken.push_back(std::move(t));
    std::sort(taken.begin(), taken.end(),
              [](const auto& a, const auto& b) { return a.tag < b.tag; });
    EndHeld(state, std::move(taken), done ? LeaseEnd::kDone : LeaseEnd::kReleased, d);
    if (state.turn == 0) TakeTurn(consumer, state);
    if (state.outbox->PushUnknown(std::move(unknown))) d.wakes.push_back(state.outbox);
    ServeWaiters(now, d);
    ArmDeadline(d);
  }
  RunDeferred(d, now);
}

void Queue::ConsumerAck(uint64_t consumer, const std::vector<uint64_t>& tags, uint64_t up_to,
                        TimePoint now) {
  EndConsumerLeases(consumer, tags, up_to, true, now);
}

void Queue::ConsumerRelease(uint64_t consumer, const std::vector<uint64_t>& tags, uint64_t up_to,
                            TimePoint now) {
  EndConsumerLeases(consumer, tags, up_to, false, now);
}

void Queue::ConsumerExtend(uint64_t consumer, const std::vector<uint64_t>& tags, uint64_t up_to,
                           TimePoint now) {
  Deferred d;
  {
    std::lock_guard lock(mu_);
    auto c = consumers_.find(consumer);
    if (c == consumers_.end()) return;
    ConsumerState& state = c->second;
    const TimePoint expiry =
        state.ack_timeout > Duration::zero() ? now + state.ack_timeout : kNever;
    std::vector<uint64_t> unknown;
    for (uint64_t tag : tags) {
      if (!state.held.Extend(tag, expiry)) unknown.push_back(tag);
    }
    state.held.ExtendUpTo(up_to, expiry);
    // Expiries only move later, so the deadline already armed stays valid:
    // firing early finds nothing due and re-arms.
    if (state.outbox->PushUnknown(std::move(unknown))) d.wakes.push_back(state.outbox);
  }
  RunDeferred(d, now);
}

void Queue::DetachConsumer(uint64_t consumer, Error why, TimePoint now) {
  Deferred d;
  {
    std::lock_guard lock(mu_);
    auto it = consumers_.find(consumer);
    if (it == consumers_.end()) return;
    ConsumerState c = std::move(it->second);
    consumers_.erase(it);
    ReleaseConsumer(c, std::move(why), d);
    ServeWaiters(now, d);
    ArmDeadline(d);
  }
  RunDeferred(d, now);
}

Result<uint64_t> Queue::Offer(std::string_view payload, const Headers& headers, TimePoint now,
                              QueueJournal::Committed written) {
  const uint64_t bytes = Message::AccountedBytes(payload, headers);
  Deferred d;
  Result<uint64_t> result = Error{Errc::kQueueFull, {}};
  {
    std::lock_guard lock(mu_);
    if (deleted_) {
      result = Error{Errc::kQueueDeleted, Describe() + " was deleted"};
    } else if (closed_) {
      result = Error{Errc::kQueueClosed, Describe() + " is closed"};
    } else if (auto too_large = TooLargeForQueue(bytes)) {
      result = *too_large;
    } else if (const Room room = putters_.empty() ? CheckRoom(bytes, false) : Room::kFull;
               room != Room::kYes) {
      result = NoRoomError(room == Room::kNoMemory);
    } else {
      result = EnqueueOrJournal(Message::Make(0, payload, headers), std::move(written));
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
    EnqueueOrJournal(std::move(msg));
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
  s.in_flight = InFlight();
  s.unfinished = Unfinished();
  s.waiting_getters = getters_.size() - consumer_turns_;
  for (const auto& [id, c] : consumers_) {
    s.consumers.push_back({id, c.prefetch, c.held.size(), c.delivered, c.acked});
  }
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
  for (const auto& [id, c] : consumers_) next = std::min(next, c.held.next_expiry());
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
    for (auto& [id, c] : consumers_) {
      auto taken = c.held.TakeExpired(now);
      if (taken.empty()) continue;
      EndHeld(c, std::move(taken), LeaseEnd::kExpired, d);
      if (c.turn == 0) TakeTurn(id, c);
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
  // Outside the lock, so another thread's record may come first: a task_done
  // written before its delivery is harmless on replay (QueueReplay).
  if (journal_ != nullptr) {
    // A deleted queue's journal drops these (QueueJournal::Deleted).
    if (!d.delivered.empty()) journal_->Delivered(d.delivered);
    if (!d.done.empty()) journal_->Done(d.done);
  }
  for (auto& cb : d.callbacks) cb();
  for (auto& outbox : d.wakes) outbox->Wake();
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
