#include "broker/core/queue.h"

#include <algorithm>
#include <type_traits>

namespace basin::core {
Queue::Queue(QueueConfig config, uint64_t incarnation, QueueLimits limits, MemoryBudget* memory,
             DeadlineScheduler* scheduler, std::shared_ptr<Queue> dead_letter,
             std::shared_ptr<QueueJournal> journal)
    : config_(std::move(config)),
      limits_(limits),
      memory_(memory),
      scheduler_(scheduler),
      dead_letter_(std::move(dead_letter)),
      journal_(std::move(journal)),
      ready_(config_.max_priority),
      leases_(incarnation),
      waiters_(limits.max_waiters),
      index_(limits) {}

Queue::~Queue() {
  // What the queue still holds is released from the broker's budget.
  uint64_t bytes = ready_.bytes() + delayed_bytes_ + backlog_bytes_ + groups_bytes_ +
                   pending_.bytes() + leases_.bytes() + index_charged_;
  for (auto& [id, consumer] : consumers_) {
    bytes += consumer.held.bytes();
    consumer.outbox->End(Error{Errc::kQueueDeleted, Describe() + " is gone"});
  }
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
  return waiters_.CheckCap(Describe());
}

Queue::Room Queue::CheckRoom(uint64_t bytes, bool wait_for_memory, size_t count, uint64_t keys,
                             uint64_t later) {
  if (count == 0 && keys == 0 && later == 0) return Room::kYes;
  if (count != 0 && config_.max_size != 0 &&
      ready_.size() + backlog_count_ + pending_.room_count() + count > config_.max_size) {
    return Room::kFull;
  }
  if (count != 0 && config_.max_bytes != 0 &&
      ready_.bytes() + backlog_bytes_ + pending_.room_bytes() + bytes > config_.max_bytes) {
    return Room::kFull;
  }
  const uint64_t charge = bytes + keys + later;
  if (memory_->TryReserve(charge)) {
    index_charged_ += keys;
    return Room::kYes;
  }
  if (!wait_for_memory) return Room::kNoMemory;
  // One registration until the budget wakes us: a putter that retries on
  // every change must not add a listener each time.
  if (!memory_listener_) {
    memory_listener_ = true;
    if (memory_->ReserveOrWait(charge, weak_from_this())) {
      index_charged_ += keys;
      return Room::kYes;
    }
  }
  return Room::kNoMemory;
}

void Queue::SyncIndexMemory(Deferred& d) {
  // Admission reserved an estimate; the index knows what it really keeps
  // (and what it let go of as ids aged out).
  const uint64_t held = index_.bytes();
  if (held > index_charged_) {
    memory_->ForceReserve(held - index_charged_);
  } else {
    d.bytes_freed += index_charged_ - held;
  }
  index_charged_ = held;
}

uint64_t Queue::Enqueue(MessagePtr msg, TimePoint now) {
  const uint64_t id = next_message_id_++;
  msg->set_id(id);
  ++total_put_;
  Arrive(std::move(msg), now);
  return id;
}

void Queue::Arrive(MessagePtr msg, TimePoint now) {
  if (!msg->group().empty()) {
    auto it = groups_.find(msg->group());
    const bool fresh = it == groups_.end();
    if (fresh) it = groups_.emplace(std::string(msg->group()), Group{}).first;
    Group& g = it->second;
    if (fresh) {
      groups_bytes_ += kGroupBytes;
      memory_->ForceReserve(kGroupBytes);
    }
    if (g.out) {
      if (g.backlog == nullptr) {
        g.backlog = std::make_unique<HoleDeque>();
        groups_bytes_ += kBacklogBytes;
        memory_->ForceReserve(kBacklogBytes);
      }
      ++backlog_count_;
      backlog_bytes_ += msg->bytes();
      Track(*msg, kInBacklog);
      g.backlog->PushBack(std::move(msg));
      return;
    }
    g.out = true;  // a grouped message is never delayed at its put (CheckAttrs)
  }
  if (const TimePoint at = msg->ready_at(); at > now) {
    delayed_bytes_ += msg->bytes();
    Track(*msg, kInDelayed);
    const uint64_t id = msg->id();
    delayed_.emplace(std::pair(at, id), DelayedEntry{std::move(msg)});
    return;
  }
  Track(*msg, kInReady);
  ready_.PushBack(std::move(msg));
}

void Queue::Track(Message& msg, Place place) {
  if (msg.expires_at() == kNever) return;
  msg.set_place(place);
  expiry_.emplace(std::pair(msg.expires_at(), msg.id()), &msg);
}

void Queue::Untrack(Message& msg) {
  if (msg.expires_at() == kNever) return;
  msg.set_place(kOut);
  expiry_.erase({msg.expires_at(), msg.id()});
}

void Queue::AdvanceGroup(std::string_view group, Deferred& d) {
  auto it = groups_.find(group);
  if (it == groups_.end()) return;
  Group& g = it->second;
  if (g.backlog != nullptr && !g.backlog->empty()) {
    MessagePtr next = g.backlog->PopFront();
    --backlog_count_;
    backlog_bytes_ -= next->bytes();
    if (next->expires_at() != kNever) next->set_place(kInReady);  // still in the TTL index
    ready_.PushBack(std::move(next));
    return;
  }
  const uint64_t freed = kGroupBytes + (g.backlog != nullptr ? kBacklogBytes : 0);
  groups_bytes_ -= freed;
  d.bytes_freed += freed;  // released after the lock: a release may wake other queues
  groups_.erase(it);
}

bool Queue::ExpireTtl(TimePoint now, Deferred& d) {
  for (size_t n = 0; n < kDueBatch; ++n) {
    auto first = expiry_.begin();
    if (first == expiry_.end() || first->first.first > now) return false;
    Message& m = *first->second;
    expiry_.erase(first);
    MessagePtr msg;
    bool was_out = true;
    if (m.place() == kInReady) {
      msg = ready_.Remove(m);
    } else if (m.place() == kInBacklog) {
      was_out = false;
      if (auto g = groups_.find(m.group()); g != groups_.end() && g->second.backlog != nullptr) {
        msg = g->second.backlog->Take(m);
        if (msg != nullptr) {
          --backlog_count_;
          backlog_bytes_ -= msg->bytes();
        }
      }
    } else if (auto it = delayed_.find({m.ready_at(), m.id()}); it != delayed_.end()) {
      msg = std::move(it->second.msg);
      delayed_.erase(it);
      delayed_bytes_ -= msg->bytes();
    }
    if (msg == nullptr) continue;  // not where it said: nothing to expire
    msg->set_place(kOut);
    DeadLetter(std::move(msg), DeathReason::kExpired, d, was_out);
  }
  return !expiry_.empty() && expiry_.begin()->first.first <= now;
}

bool Queue::HasReady(TimePoint now, Deferred& d) {
  for (;;) {
    const Message* best = ready_.Best();
    if (best == nullptr || best->expires_at() > now) return best != nullptr;
    if (d.expire_budget == 0) return false;  // the timer takes the rest
    --d.expire_budget;
    MessagePtr msg = ready_.PopBest();
    Untrack(*msg);
    DeadLetter(std::move(msg), DeathReason::kExpired, d);
  }
}

MessageAttrs Queue::WithDefaults(MessageAttrs attrs, TimePoint now) const {
  if (attrs.expires_at == kNever && config_.message_ttl > Duration::zero()) {
    attrs.expires_at = AddSaturating(now, config_.message_ttl);
  }
  return attrs;
}

bool Queue::PromoteDue(TimePoint now) {
  // Retries go to the head: pushed in reverse, so that the one due first
  // (then the lower id) is delivered first.
  std::vector<MessagePtr> to_head;
  for (size_t n = 0; n < kDueBatch; ++n) {
    auto first = delayed_.begin();
    if (first == delayed_.end() || first->first.first > now) break;
    MessagePtr msg = std::move(first->second.msg);
    const bool head = first->second.to_head;
    delayed_.erase(first);
    delayed_bytes_ -= msg->bytes();
    // Ready now, whatever the queue's bound: it was admitted when it was put.
    msg->set_place(kInReady);
    if (head) {
      to_head.push_back(std::move(msg));
      continue;
    }
    ready_.PushBack(std::move(msg));
  }
  for (auto it = to_head.rbegin(); it != to_head.rend(); ++it) Requeue(std::move(*it));
  return !delayed_.empty() && delayed_.begin()->first.first <= now;
}

uint64_t Queue::EnqueueOrJournal(MessagePtr msg, TimePoint now, QueueJournal::Committed written) {
  if (journal_ == nullptr) return Enqueue(std::move(msg), now);
  const uint64_t id = next_message_id_++;
  msg->set_id(id);
  PendingBatch batch;
  if (written) {
    // Answered from OnCommitted, which has the journal's time; the copy's
    // tracker needs none.
    batch.cb = [written = std::move(written)](Result<std::vector<PutResult>> r) {
      written(r.ok() ? std::nullopt : std::optional<Error>(r.error()), TimePoint());
    };
  }
  batch.bytes = msg->bytes();
  if (msg->ready_at() <= now) {
    batch.room_count = 1;
    batch.room_bytes = batch.bytes;
  }
  batch.msgs.push_back(std::move(msg));
  Journal(std::move(batch));
  return id;
}

void Queue::Journal(PendingBatch batch) {
  std::vector<const Message*> records;
  records.reserve(batch.msgs.size());
  for (const MessagePtr& m : batch.msgs) records.push_back(m.get());
  const uint64_t seq = pending_.next_seq();
  journal_->Put(records, batch.keys,
                [weak = weak_from_this(), seq](std::optional<Error> error, TimePoint now) {
                  if (auto queue = weak.lock()) queue->OnCommitted(seq, std::move(error), now);
                });
  pending_.Admit(std::move(batch));
}

void Queue::OnCommitted(uint64_t seq, std::optional<Error> error, TimePoint now) {
  Deferred d;
  {
    std::lock_guard lock(mu_);
    // Batches become ready in admission order, whatever order their writes
    // were confirmed in.
    for (PendingBatch& b : pending_.Resolve(seq, std::move(error))) {
      if (b.error) {
        index_.Forget(b.keys);
        d.bytes_freed += b.bytes;
        if (b.cb) d.Answer(std::move(b.cb), Result<std::vector<PutResult>>(*b.error));
        continue;
      }
      for (MessagePtr& m : b.msgs) {
        ++total_put_;
        Arrive(std::move(m), now);
      }
      if (b.cb) d.Answer(std::move(b.cb), Result<std::vector<PutResult>>(std::move(b.results)));
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
    for (const PutKeys& k : keys) index_.Restore(k, now);
    SyncIndexMemory(d);
    for (MessagePtr& m : messages) {
      memory_->ForceReserve(m->bytes());
      ++total_put_;
      if (m->expires_at() <= now) {
        DeadLetter(std::move(m), DeathReason::kExpired, d, /*was_out=*/false);
        continue;
      }
      if (OutOfDeliveries(*m)) {
        DeadLetter(std::move(m), DeathReason::kMaxDeliveries, d, /*was_out=*/false);
        continue;
      }
      Arrive(std::move(m), now);
    }
    ArmDeadline(d);
  }
  RunDeferred(d, now);
}

void Queue::RecordBinding(const std::string& pattern, bool bound) {
  if (journal_ != nullptr) journal_->Binding(pattern, bound);
}

MessagePtr Queue::TakeReady(Deferred& d) {
  MessagePtr msg = ready_.PopBest();
  Untrack(*msg);
  msg->add_delivery();
  if (journal_ != nullptr) d.delivered.push_back(msg->id());
  ++total_delivered_;
  return msg;
}

Delivery Queue::Deliver(Duration visibility, TimePoint now, Deferred& d) {
  MessagePtr msg = TakeReady(d);
  Delivery out{msg->id(), std::string(msg->payload()), msg->headers(), msg->delivery_count(), {},
               visibility};
  out.tag = leases_.Add(std::move(msg), AddSaturating(now, visibility));
  return out;
}

void Queue::ServeWaiters(TimePoint now, Deferred& d) {
  WaiterSet::Putters& putters = waiters_.putters();
  WaiterSet::Getters& getters = waiters_.getters();
  for (bool progressed = true; progressed;) {
    progressed = false;
    while (!putters.empty()) {
      PutWaiter& p = putters.begin()->second;
      const Room room = TryAdmit(p, now, d);
      if (room != Room::kYes) {
        p.blocked_on_memory = room == Room::kNoMemory;
        break;
      }
      waiters_.PopPutter();
      progressed = true;
    }
    while (!getters.empty() && HasReady(now, d)) {
      GetWaiter& g = getters.begin()->second;
      if (g.consumer != 0) {
        ServeConsumer(g.consumer, now, d);
        progressed = true;
        continue;
      }
      d.Answer(std::move(g.cb), Result<std::vector<Delivery>>(DeliverBatch(g, now, d)));
      waiters_.PopGetter();
      progressed = true;
    }
  }
  if (Drained()) {
    const Error drained{Errc::kQueueDrained, Describe() + " is closed and drained"};
    EndConsumers(drained, now, d);
    for (GetWaiter& g : waiters_.TakeGetters()) d.Answer(std::move(g.cb), drained);
  }
  if (Unfinished() == 0) {
    for (JoinWaiter& j : waiters_.TakeJoiners()) d.Answer(std::move(j.cb), Result<void>());
  }
  // Admissions (and a retry that swept quiet producers) change what the
  // idempotency index keeps: every path that retries putters comes here.
  SyncIndexMemory(d);
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

Queue::Room Queue::TryAdmit(PutWaiter& p, TimePoint now, Deferred& d) {
  // Duplicates take no room: found once (the index keeps the answer on the
  // putter), so a batch that waits for room costs O(1) a retry.
  const PutWaiter::Resolution& r = index_.Resolve(p, now);
  // A repeat of a durable put still on its way to the disk is not answered
  // with the original's id yet: that write may fail, and the repeat would then
  // have confirmed a message that is nowhere. Pending batches settle in id
  // order, so the original is pending when its id is at or past the oldest
  // pending message's.
  if (const uint64_t oldest = pending_.oldest_id(); oldest != 0) {
    for (const auto& [i, original] : r.duplicates) {
      if (original >= oldest) return Room::kOriginalPending;
    }
  }
  // A grouped message may make a group (and its backlog), charged when it
  // arrives: reserved with the batch, like index keys, and what is not used
  // is let go by SyncIndexMemory.
  const uint64_t groups = r.grouped * (kGroupBytes + kBacklogBytes);
  const Room room = CheckRoom(r.bytes, true, r.count, r.keys + groups, r.later_bytes);
  if (room != Room::kYes) return room;
  PendingBatch durable;  // a durable queue's admitted messages
  durable.bytes = r.bytes + r.later_bytes;
  durable.room_count = r.count;
  durable.room_bytes = r.bytes;
  if (journal_ == nullptr) {
    index_.Admit(p, now, nullptr, [&](size_t i) { return Enqueue(std::move(p.msgs[i]), now); });
  } else {
    index_.Admit(p, now, &durable.keys, [&](size_t i) {
      const uint64_t id = next_message_id_++;
      p.msgs[i]->set_id(id);
      durable.msgs.push_back(std::move(p.msgs[i]));
      return id;
    });
  }
  if (durable.msgs.empty()) {  // in memory (ready now), or all duplicates: answered now
    d.Answer(std::move(p.cb), Result<std::vector<PutResult>>(std::move(p.results)));
    return Room::kYes;
  }
  durable.cb = std::move(p.cb);  // answered once written
  durable.results = std::move(p.results);
  Journal(std::move(durable));
  if (p.admitted) d.callbacks.push_back(std::move(p.admitted));
  return Room::kYes;
}

void Queue::PutBatch(const std::vector<MessageSpec>& batch, TimePoint now, TimePoint deadline,
                     WaitId* wait_id, PutBatchCallback cb, BatchOrigin origin,
                     std::function<void()> admitted) {
  *wait_id = 0;
  if (batch.size() > kMaxBatchMessages) {
    return cb(Error{Errc::kInvalidArgument, "a batch of " + std::to_string(batch.size()) +
                                                " messages exceeds the limit of " +
                                                std::to_string(kMaxBatchMessages)});
  }
  static const Headers kNoHeaders;
  PutWaiter p;
  p.deadline = deadline;
  p.producer = origin.producer;
  p.first_sequence = origin.first_sequence;
  p.results.resize(batch.size());
  uint64_t total = 0;  // of the messages that take room at once
  uint64_t all = 0;    // of every message, delayed ones included: what memory holds
  size_t count = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    const Headers& headers = batch[i].headers != nullptr ? *batch[i].headers : kNoHeaders;
    MessageAttrs attrs = WithDefaults(batch[i].attrs, now);
    Result<uint64_t> valid =
        batch[i].invalid ? Result<uint64_t>(*batch[i].invalid) : CheckAttrs(attrs, now);
    if (valid.ok()) {
      valid = Message::Validate(batch[i].payload, headers, limits_.max_message_bytes, attrs);
    }
    if (valid.ok()) {
      if (auto too_large = TooLargeForQueue(valid.value())) valid = *too_large;
    }
    if (valid.ok() && batch[i].dedup_id.size() > kMaxDedupIdBytes) {
      valid = Error{Errc::kInvalidArgument,
                    "dedup_id of " + std::to_string(batch[i].dedup_id.size()) +
                        " bytes is longer than the limit of " + std::to_string(kMaxDedupIdBytes)};
    }
    if (!valid.ok()) {
      p.results[i].error = valid.error();
      continue;
    }
    all += valid.value() + (attrs.group.empty() ? 0 : kGroupBytes + kBacklogBytes);
    if (attrs.ready_at <= now) {
      total += valid.value();
      ++count;
    }
    p.msgs.push_back(Message::Make(0, batch[i].payload, headers, attrs));
    p.dedup_ids.push_back(batch[i].dedup_id);
    p.slots.push_back(i);
  }
  if ((config_.max_size != 0 && count > config_.max_size) ||
      (config_.max_bytes != 0 && total > config_.max_bytes)) {
    return cb(Error{Errc::kInvalidArgument, "a batch of " + std::to_string(count) + " messages / " +
                                                std::to_string(total) + " bytes can never fit " +
                                                Describe() + " (max_size " +
                                                std::to_string(config_.max_size) + ", max_bytes " +
                                                std::to_string(config_.max_bytes) + ")"});
  }
  // Nor can a batch larger than the queues' part of --max-memory: waiting
  // for it would hold up every later put on the queue for good.
  if (const uint64_t limit = memory_ == nullptr ? 0 : memory_->queue_limit();
      limit != 0 && all > limit) {
    return cb(Error{Errc::kInvalidArgument,
                    "a batch of " + std::to_string(all) +
                        " bytes can never fit the broker's memory for queues (" +
                        std::to_string(limit) + " bytes: --max-memory less the subscriber share)"});
  }
  p.cb = std::move(cb);
  p.admitted = std::move(admitted);

  Deferred d;
  {
    std::lock_guard lock(mu_);
    Room room = Room::kFull;
    Result<void> origin_ok;
    if (!p.producer.empty()) {
      origin_ok = index_.CheckOrigin(p.producer, p.first_sequence, batch.size(), now, Describe());
    }
    if (deleted_) {
      d.Answer(std::move(p.cb), Error{Errc::kQueueDeleted, Describe() + " was deleted"});
    } else if (shutting_down_) {
      // Draining (SIGTERM): no new work, so that nothing is accepted that
      // the exit would then lose.
      d.Answer(std::move(p.cb), Error{Errc::kShutdown, "broker is shutting down"});
    } else if (closed_) {
      d.Answer(std::move(p.cb), Error{Errc::kQueueClosed, Describe() + " is closed"});
    } else if (!origin_ok.ok()) {
      d.Answer(std::move(p.cb), origin_ok.error());
    } else if (room = waiters_.putters().empty() ? TryAdmit(p, now, d) : Room::kFull;
               room == Room::kYes) {
      ServeWaiters(now, d);
    } else if (auto can = CheckCanWait(now, room == Room::kOriginalPending ? kNever : deadline);
               !can.ok()) {
      d.Answer(std::move(p.cb), can.error());
    } else if (deadline <= now && room != Room::kOriginalPending) {
      d.Answer(std::move(p.cb), NoRoomError(room == Room::kNoMemory));
    } else {
      // A repeat waits for its original's write even when the caller would
      // not wait for room: the disk answers within one sync.
      if (deadline <= now) p.deadline = kNever;
      p.blocked_on_memory = room == Room::kNoMemory;
      *wait_id = waiters_.AddPutter(std::move(p));
    }
    SyncIndexMemory(d);
    ArmDeadline(d);
  }
  RunDeferred(d, now);
}

Result<uint64_t> Queue::CheckAttrs(MessageAttrs& attrs, TimePoint now) const {
  if (attrs.priority > kMaxPriority) {
    return Error{Errc::kInvalidArgument, "priority " + std::to_string(attrs.priority) +
                                             " is above the limit of " +
                                             std::to_string(kMaxPriority)};
  }
  // Above the queue's levels it counts as the highest (RabbitMQ's rule);
  // kept as asked, so a dead letter keeps it for its next queue.
  if (attrs.group.size() > kMaxGroupBytes) {
    return Error{Errc::kInvalidArgument, "group of " + std::to_string(attrs.group.size()) +
                                             " bytes is longer than the limit of " +
                                             std::to_string(kMaxGroupBytes)};
  }
  if (!attrs.group.empty() && attrs.ready_at > now) {
    return Error{Errc::kInvalidArgument,
                 "a message of an ordering group cannot be delayed (it would hold up its group, "
                 "or overtake it)"};
  }
  if (attrs.expires_at != kNever) {
    if (attrs.expires_at - now > kMaxTtl) {
      return Error{Errc::kInvalidArgument,
                   "a time to live longer than " + DaysText(kMaxTtl) + " (the limit)"};
    }
    if (attrs.expires_at <= std::max(now, attrs.ready_at)) {
      return Error{Errc::kInvalidArgument,
                   "the message would expire before it is ready (its time to live must end "
                   "after its delay)"};
    }
  }
  if (attrs.ready_at <= now) {
    attrs.ready_at = {};  // due already: no delay to keep
  } else if (attrs.ready_at - now > kMaxDelay) {
    return Error{Errc::kInvalidArgument, "the message is scheduled more than " +
                                             DaysText(kMaxDelay) + " ahead (the limit)"};
  }
  return uint64_t{0};
}

std::optional<Error> Queue::TooLargeForQueue(uint64_t bytes) const {
  if (config_.max_bytes == 0 || bytes <= config_.max_bytes) return std::nullopt;
  return Error{Errc::kMessageTooLarge, "message of " + std::to_string(bytes) + " bytes exceeds " +
                                           Describe() + "'s max_bytes of " +
                                           std::to_string(config_.max_bytes)};
}

Error Queue::NoRoomError(bool memory) const {
  if (memory) {
    return Error{Errc::kBrokerMemory,
                 "broker memory limit for queues of " + std::to_string(memory_->queue_limit()) +
                     " bytes reached; " + Describe() + " cannot take the message"};
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

std::vector<Delivery> Queue::DeliverBatch(const GetWaiter& g, TimePoint now, Deferred& d) {
  std::vector<Delivery> out;
  uint64_t bytes = 0;
  while (HasReady(now, d) && out.size() < g.max_messages &&
         (out.empty() || bytes + ready_.Best()->bytes() <= g.max_bytes)) {
    bytes += ready_.Best()->bytes();
    out.push_back(Deliver(g.visibility, now, d));
  }
  return out;
}

void Queue::GetBatch(size_t max_messages, uint64_t max_bytes, Duration visibility, TimePoint now,
                     TimePoint deadline, WaitId* wait_id, GetBatchCallback cb) {
  *wait_id = 0;
  // The service refuses larger asks; the core clamps whatever reaches it, so
  // one answer built under the lock stays bounded.
  GetWaiter g{deadline, EffectiveVisibility(visibility),
              std::clamp<size_t>(max_messages, 1, kMaxGetMessages),
              std::min(max_bytes, kMaxGetBytes), std::move(cb)};
  Deferred d;
  {
    std::lock_guard lock(mu_);
    if (shutting_down_ && !deleted_) {
      // Draining: what is ready stays for the next start (a durable queue)
      // rather than go to a consumer the exit may cut off mid-task.
      d.Answer(std::move(g.cb), Error{Errc::kShutdown, "broker is shutting down"});
    } else if (!deleted_ && waiters_.getters().empty() && HasReady(now, d)) {
      d.Answer(std::move(g.cb), Result<std::vector<Delivery>>(DeliverBatch(g, now, d)));
      ServeWaiters(now, d);  // the freed slots may admit blocked putters
    } else if (auto can = CheckCanWait(now, deadline); !can.ok()) {
      d.Answer(std::move(g.cb), can.error());
    } else if (Drained()) {
      d.Answer(std::move(g.cb), Error{Errc::kQueueDrained, Describe() + " is closed and drained"});
    } else if (deadline <= now) {
      d.Answer(std::move(g.cb), Error{Errc::kQueueEmpty, Describe() + " is empty"});
    } else {
      *wait_id = waiters_.AddGetter(std::move(g));
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
      d.Answer(std::move(cb), Result<void>());
    } else if (auto can = CheckCanWait(now, deadline); !can.ok()) {
      d.Answer(std::move(cb), can.error());
    } else if (deadline <= now) {
      d.Answer(std::move(cb),
               Error{Errc::kJoinTimeout, Describe() + " still has " + std::to_string(Unfinished()) +
                                             " unfinished messages"});
    } else {
      *wait_id = waiters_.AddJoiner(JoinWaiter{deadline, std::move(cb)});
    }
    ArmDeadline(d);
  }
  RunDeferred(d, now);
}

void Queue::Cancel(WaitId id) {
  if (id == 0) return;
  Deferred d;
  {
    std::lock_guard lock(mu_);
    if (auto w = waiters_.Take(id)) {
      d.callbacks.push_back(
          WaiterSet::Fail(std::move(*w), Error{Errc::kCancelled, "call cancelled by the client"}));
    }
  }
  RunDeferred(d, Clock::now());
}

Queue::LeaseEnd Queue::EndLease(uint64_t lease, LeaseEnd how, TimePoint now, Deferred& d,
                                std::optional<Duration> delay, Duration* waits) {
  MessagePtr msg = leases_.Take(lease, how);
  const LeaseEnd ended = Settle(std::move(msg), how, now, d, delay, waits);
  if (ended != how) leases_.Remember(lease, ended);
  return ended;
}

void Queue::EndHeld(ConsumerState& c, std::vector<HeldDeliveries::Taken> taken, LeaseEnd how,
                    TimePoint now, Deferred& d, std::optional<Duration> delay) {
  if (taken.empty()) return;
  stream_held_ -= taken.size();
  if (how == LeaseEnd::kDone) c.acked += taken.size();
  // A delivery still waiting in the outbox is dropped there: the client never
  // saw it, so it must not arrive after the message went elsewhere.
  std::vector<uint64_t> tags;
  tags.reserve(taken.size());
  for (const auto& t : taken) tags.push_back(t.tag);
  const uint64_t first_unwritten = c.outbox->DropUnwritten(tags);
  // Requeues go to the head: the last one requeued is delivered first, so walk
  // backwards to keep them in the order they were delivered.
  for (auto it = taken.rbegin(); it != taken.rend(); ++it) {
    if (it->tag >= first_unwritten && how != LeaseEnd::kDone) {
      // Never reached the client: so a consumer that does not read cannot
      // run a message out of its deliveries (or into the dead-letter queue).
      Unsend(std::move(it->msg));
      continue;
    }
    if (how == LeaseEnd::kExpired && c.outbox->PushExpired(it->tag)) d.wakes.push_back(c.outbox);
    Settle(std::move(it->msg), how, now, d, delay);
  }
}

Queue::LeaseEnd Queue::Settle(MessagePtr msg, LeaseEnd how, TimePoint now, Deferred& d,
                              std::optional<Duration> delay, Duration* waits) {
  if (how == LeaseEnd::kDone) {
    if (!msg->group().empty()) AdvanceGroup(msg->group(), d);
    ++total_done_;
    d.bytes_freed += msg->bytes();
    if (journal_ != nullptr) d.done.push_back(msg->id());
    return how;
  }
  if (how == LeaseEnd::kRejected) {
    DeadLetter(std::move(msg), DeathReason::kRejected, d);
    return how;
  }
  // A message that expired while it was out expires when it comes back.
  if (msg->expires_at() <= now) {
    DeadLetter(std::move(msg), DeathReason::kExpired, d);
    return LeaseEnd::kDeadLettered;
  }
  if (OutOfDeliveries(*msg)) {
    DeadLetter(std::move(msg), DeathReason::kMaxDeliveries, d);
    return LeaseEnd::kDeadLettered;
  }
  const Duration wait = RetryDelay(*msg, delay);
  if (waits != nullptr) *waits = wait;
  if (wait > Duration::zero() && AddSaturating(now, wait) >= msg->expires_at()) {
    // Its retry would come after its expiry: it expires now.
    DeadLetter(std::move(msg), DeathReason::kExpired, d);
    return LeaseEnd::kDeadLettered;
  }
  ++total_redelivered_;
  if (wait > Duration::zero()) {
    RequeueAt(std::move(msg), AddSaturating(now, wait), d);
  } else {
    Requeue(std::move(msg));
  }
  return how;
}

Duration Queue::RetryDelay(const Message& msg, std::optional<Duration> asked) const {
  if (asked) return *asked;
  const std::vector<Duration>& backoff = config_.retry_backoff;
  if (backoff.empty()) return Duration::zero();
  const size_t deliveries = std::max<size_t>(msg.delivery_count(), 1);
  return backoff[std::min(deliveries, backoff.size()) - 1];
}

void Queue::Unsend(MessagePtr msg) {
  msg->undo_delivery();
  --total_delivered_;
  Requeue(std::move(msg));
}

void Queue::Requeue(MessagePtr msg) {
  Track(*msg, kInReady);
  ready_.PushFront(std::move(msg));  // requeues ignore max_size: the message was accepted
}

void Queue::RequeueAt(MessagePtr msg, TimePoint at, Deferred& d) {
  if (journal_ != nullptr) d.retries.push_back({msg->id(), msg->delivery_count(), at});
  delayed_bytes_ += msg->bytes();
  msg->set_ready_at(at);  // the TTL index finds it by its delayed key
  Track(*msg, kInDelayed);
  const uint64_t id = msg->id();
  delayed_.emplace(std::pair(at, id), DelayedEntry{std::move(msg), true});
}

std::pair<std::string_view, std::string_view> Queue::ReasonHeaders(DeathReason why) {
  switch (why) {
    case DeathReason::kRejected:
      return {"rejected", "rejected"};
    case DeathReason::kExpired:
      return {"expired", "expired"};
    case DeathReason::kMaxDeliveries:
      break;
  }
  return {"max-deliveries", "delivery_limit"};
}

bool Queue::OutOfDeliveries(const Message& msg) const {
  return config_.max_deliveries != 0 && msg.delivery_count() >= config_.max_deliveries;
}

void Queue::DeadLetter(MessagePtr msg, DeathReason why, Deferred& d, bool was_out) {
  if (was_out && !msg->group().empty()) AdvanceGroup(msg->group(), d);
  ++total_dead_lettered_;
  if (why == DeathReason::kExpired) ++total_expired_;
  d.bytes_freed += msg->bytes();
  if (journal_ != nullptr) d.done.push_back(msg->id());
  if (dead_letter_ != nullptr) d.dead_letters.emplace_back(std::move(msg), why);
}

Result<void> Queue::TaskDone(std::string_view tag, TimePoint now) {
  Deferred d;
  {
    std::lock_guard lock(mu_);
    auto lease = leases_.Find(tag, Describe());
    if (!lease.ok()) return lease.error();
    EndLease(lease.value(), LeaseEnd::kDone, now, d);
    ServeWaiters(now, d);
    ArmDeadline(d);  // admitted putters may bring delays or expiries
  }
  RunDeferred(d, now);
  return {};
}

Result<Duration> Queue::ExtendLease(std::string_view tag, Duration duration, TimePoint now) {
  if (duration <= Duration::zero()) {
    return Error{Errc::kInvalidTimeout, "lease extension must be positive"};
  }
  duration = std::min(duration, limits_.max_lease);
  Deferred d;
  {
    std::lock_guard lock(mu_);
    auto lease = leases_.Find(tag, Describe());
    if (!lease.ok()) return lease.error();
    leases_.Extend(lease.value(), AddSaturating(now, duration));
    ArmDeadline(d);
  }
  RunDeferred(d, now);
  return duration;
}

Result<Queue::Released> Queue::Release(std::string_view tag, TimePoint now,
                                       std::optional<Duration> delay, bool reject) {
  if (delay && *delay > kMaxDelay) {
    return Error{Errc::kInvalidArgument,
                 "a release delay is longer than the limit of " + DaysText(kMaxDelay)};
  }
  if (delay && *delay < Duration::zero()) {
    return Error{Errc::kInvalidTimeout, "a release delay must not be negative"};
  }
  Deferred d;
  Released out;
  {
    std::lock_guard lock(mu_);
    auto lease = leases_.Find(tag, Describe());
    if (!lease.ok()) return lease.error();
    const LeaseEnd ended =
        EndLease(lease.value(), reject ? LeaseEnd::kRejected : LeaseEnd::kReleased, now, d, delay,
                 &out.delay);
    out.dead_lettered = ended == LeaseEnd::kDeadLettered || ended == LeaseEnd::kRejected;
    if (out.dead_lettered) out.delay = Duration::zero();
    ServeWaiters(now, d);
    ArmDeadline(d);
  }
  RunDeferred(d, now);
  return out;
}

void Queue::TakeBack(const std::vector<std::string>& tags, TimePoint now) {
  Deferred d;
  {
    std::lock_guard lock(mu_);
    // Each goes to the head: the last first, so the first ends up in front.
    for (auto tag = tags.rbegin(); tag != tags.rend(); ++tag) {
      auto lease = leases_.Find(*tag, Describe());
      if (!lease.ok()) continue;
      Unsend(leases_.Take(lease.value(), LeaseEnd::kReleased));
    }
    ServeWaiters(now, d);
    ArmDeadline(d);
  }
  RunDeferred(d, now);
}

bool Queue::Close(TimePoint now) {
  Deferred d;
  bool already = false;
  {
    std::lock_guard lock(mu_);
    already = closed_;
    closed_ = true;
    if (!already && journal_ != nullptr) journal_->Closed(nullptr);
    const Error closed{Errc::kQueueClosed, Describe() + " was closed while the put waited"};
    for (PutWaiter& p : waiters_.TakePutters()) d.Answer(std::move(p.cb), closed);
    ServeWaiters(now, d);
    ArmDeadline(d);
  }
  RunDeferred(d, now);
  return already;
}

void Queue::FailAllWaiters(const Error& e, Deferred& d) {
  for (WaiterSet::Ended& w : waiters_.TakeAll()) {
    d.callbacks.push_back(WaiterSet::Fail(std::move(w), e));
  }
}

uint64_t Queue::Delete() {
  Deferred d;
  uint64_t dropped = 0;
  {
    std::lock_guard lock(mu_);
    deleted_ = true;
    const Error deleted{Errc::kQueueDeleted, Describe() + " was deleted"};
    EndConsumers(deleted, Clock::now(), d);  // consumers' holdings are back in the queue
    FailAllWaiters(deleted, d);
    // Durable puts still being written are refused: the queue is gone.
    for (PendingBatch& b : pending_.TakeAll()) {
      d.bytes_freed += b.bytes;
      if (b.cb) d.Answer(std::move(b.cb), deleted);
    }
    for (MessagePtr& m : leases_.TakeAll()) {
      d.bytes_freed += m->bytes();
      ++dropped;
    }
    dropped += ready_.size() + delayed_.size();
    d.retries.clear();
    d.bytes_freed += ready_.bytes() + delayed_bytes_;
    ready_.Clear();
    delayed_.clear();
    delayed_bytes_ = 0;
    expiry_.clear();
    dropped += backlog_count_;
    d.bytes_freed += backlog_bytes_ + groups_bytes_;
    groups_.clear();
    backlog_count_ = 0;
    backlog_bytes_ = 0;
    groups_bytes_ = 0;
    d.delivered.clear();
    d.done.clear();
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
    const Error shutdown{Errc::kShutdown, "broker is shutting down"};
    EndConsumers(shutdown, Clock::now(), d);
    FailAllWaiters(shutdown, d);
  }
  RunDeferred(d, Clock::now());
}

void Queue::TakeTurn(uint64_t consumer, ConsumerState& c) {
  if (c.turn != 0 || c.held.size() >= c.prefetch) return;
  c.turn = waiters_.AddTurn(consumer, c.spare_turn);
}

void Queue::IndexConsumer(uint64_t id, ConsumerState& c) {
  const TimePoint next = c.held.next_expiry();
  if (next == c.indexed_expiry) return;
  if (c.indexed_expiry != kNever) consumer_expiry_.erase({c.indexed_expiry, id});
  if (next != kNever) consumer_expiry_.emplace(next, id);
  c.indexed_expiry = next;
}

void Queue::ServeConsumer(uint64_t consumer, TimePoint now, Deferred& d) {
  ConsumerState& c = consumers_.at(consumer);
  c.spare_turn = waiters_.TakeTurn(c.turn);
  c.turn = 0;
  // One message a turn: consumers and blocked Gets share the queue fairly.
  MessagePtr msg = TakeReady(d);
  // The stream writes the queue's own block after the lock: no copy, and
  // nothing to charge beyond what `held` is charged for the message.
  StreamDelivery delivery{0, MessageRef(*msg), msg->delivery_count()};
  const TimePoint expiry =
      c.ack_timeout > Duration::zero() ? AddSaturating(now, c.ack_timeout) : kNever;
  delivery.tag = c.held.Add(std::move(msg), expiry);
  ++stream_held_;
  ++c.delivered;
  if (c.outbox->Push(std::move(delivery))) d.wakes.push_back(c.outbox);
  if (expiry != kNever) IndexConsumer(consumer, c);
  TakeTurn(consumer, c);
}

void Queue::ReleaseConsumer(uint64_t id, ConsumerState& c, Error why, TimePoint now, Deferred& d) {
  if (c.turn != 0) {
    waiters_.TakeTurn(c.turn);
    c.turn = 0;
  }
  // What the outbox still holds was never written: EndHeld drops it there
  // and puts it back undelivered; then the outbox ends.
  EndHeld(c, c.held.TakeUpTo(UINT64_MAX), LeaseEnd::kReleased, now, d);
  if (c.outbox->End(std::move(why))) d.wakes.push_back(c.outbox);
  if (c.indexed_expiry != kNever) consumer_expiry_.erase({c.indexed_expiry, id});
  c.indexed_expiry = kNever;
}

void Queue::EndConsumers(const Error& why, TimePoint now, Deferred& d) {
  std::map<uint64_t, ConsumerState> all;
  all.swap(consumers_);
  for (auto& [id, c] : all) ReleaseConsumer(id, c, why, now, d);
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
    c.ack_timeout = std::min(ack_timeout, limits_.max_lease);
    c.outbox = out.outbox;
    TakeTurn(out.id, c);
    ServeWaiters(now, d);
    ArmDeadline(d);
  }
  RunDeferred(d, now);
  return out;
}

void Queue::EndConsumerLeases(uint64_t consumer, const std::vector<uint64_t>& tags, uint64_t up_to,
                              LeaseEnd how, TimePoint now, std::optional<Duration> delay) {
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
    EndHeld(state, std::move(taken), how, now, d, delay);
    IndexConsumer(consumer, state);
    if (state.turn == 0) TakeTurn(consumer, state);
    if (state.outbox->PushUnknown(std::move(unknown))) d.wakes.push_back(state.outbox);
    ServeWaiters(now, d);
    ArmDeadline(d);
  }
  RunDeferred(d, now);
}

void Queue::ConsumerAck(uint64_t consumer, const std::vector<uint64_t>& tags, uint64_t up_to,
                        TimePoint now) {
  EndConsumerLeases(consumer, tags, up_to, LeaseEnd::kDone, now);
}

void Queue::ConsumerRelease(uint64_t consumer, const std::vector<uint64_t>& tags, uint64_t up_to,
                            TimePoint now, std::optional<Duration> delay) {
  if (delay) delay = std::clamp(*delay, Duration::zero(), kMaxDelay);
  EndConsumerLeases(consumer, tags, up_to, LeaseEnd::kReleased, now, delay);
}

void Queue::ConsumerReject(uint64_t consumer, const std::vector<uint64_t>& tags, TimePoint now) {
  EndConsumerLeases(consumer, tags, 0, LeaseEnd::kRejected, now);
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
        state.ack_timeout > Duration::zero() ? AddSaturating(now, state.ack_timeout) : kNever;
    std::vector<uint64_t> unknown;
    for (uint64_t tag : tags) {
      if (!state.held.Extend(tag, expiry)) unknown.push_back(tag);
    }
    state.held.ExtendUpTo(up_to, expiry);
    // Expiries only move later, so the deadline already armed stays valid:
    // firing early finds nothing due and re-arms.
    IndexConsumer(consumer, state);
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
    ReleaseConsumer(consumer, c, std::move(why), now, d);
    ServeWaiters(now, d);
    ArmDeadline(d);
  }
  RunDeferred(d, now);
}

Result<uint64_t> Queue::Offer(std::string_view payload, const Headers& headers, TimePoint now,
                              QueueJournal::Committed written) {
  const MessageAttrs attrs = WithDefaults({}, now);
  const uint64_t bytes = Message::AccountedBytes(payload, headers, attrs);
  Deferred d;
  Result<uint64_t> result = Error{Errc::kQueueFull, {}};
  {
    std::lock_guard lock(mu_);
    if (deleted_) {
      result = Error{Errc::kQueueDeleted, Describe() + " was deleted"};
    } else if (shutting_down_) {
      result = Error{Errc::kShutdown, "broker is shutting down"};
    } else if (closed_) {
      result = Error{Errc::kQueueClosed, Describe() + " is closed"};
    } else if (auto too_large = TooLargeForQueue(bytes)) {
      result = *too_large;
    } else if (const Room room = waiters_.putters().empty() ? CheckRoom(bytes, false) : Room::kFull;
               room != Room::kYes) {
      result = NoRoomError(room == Room::kNoMemory);
    } else {
      result = EnqueueOrJournal(Message::Make(0, payload, headers, attrs), now, std::move(written));
      ServeWaiters(now, d);
      ArmDeadline(d);
    }
    if (!result.ok()) ++total_rejected_;
  }
  RunDeferred(d, now);
  return result;
}

void Queue::AcceptDeadLetter(std::string_view payload, const Headers& headers, uint8_t priority,
                             TimePoint now) {
  MessageAttrs attrs;
  attrs.priority = priority;
  MessagePtr msg = Message::Make(0, payload, headers, WithDefaults(attrs, now));
  Deferred d;
  {
    std::lock_guard lock(mu_);
    if (deleted_) return;
    memory_->ForceReserve(msg->bytes());
    EnqueueOrJournal(std::move(msg), now);
    ServeWaiters(now, d);
    ArmDeadline(d);
  }
  RunDeferred(d, now);
}

QueueStats Queue::Stats() const {
  std::lock_guard lock(mu_);
  QueueStats s;
  s.size = ready_.size() + backlog_count_;
  s.bytes = ready_.bytes() + backlog_bytes_;
  s.full = config_.max_size != 0 && s.size >= config_.max_size;
  s.empty = s.size == 0;
  s.groups = groups_.size();
  s.active_groups = groups_.size() - ready_.grouped();
  s.in_flight = InFlight();
  s.delayed = delayed_.size();
  s.unfinished = Unfinished();
  s.waiting_getters = waiters_.waiting_getters();
  for (const auto& [id, c] : consumers_) {
    s.consumers.push_back({id, c.prefetch, c.held.size(), c.delivered, c.acked});
  }
  s.waiting_putters = waiters_.waiting_putters();
  s.waiting_joiners = waiters_.waiting_joiners();
  s.total_put = total_put_;
  s.total_delivered = total_delivered_;
  s.total_done = total_done_;
  s.total_redelivered = total_redelivered_;
  s.total_dead_lettered = total_dead_lettered_;
  s.total_rejected = total_rejected_;
  s.total_expired = total_expired_;
  s.closed = closed_;
  return s;
}

uint64_t Queue::AccountedBytes() const {
  std::lock_guard lock(mu_);
  uint64_t total = index_.bytes() + leases_.bytes();
  ready_.ForEach([&](const Message& m) { total += m.bytes(); });
  for (const auto& [key, entry] : delayed_) total += entry.msg->bytes();
  total += groups_bytes_;
  for (const auto& [name, g] : groups_) {
    if (g.backlog != nullptr) g.backlog->ForEach([&](const Message& m) { total += m.bytes(); });
  }
  total += pending_.bytes();
  for (const auto& [id, c] : consumers_) total += c.held.bytes();
  return total;
}

TimePoint Queue::NextDeadline() const {
  TimePoint next = std::min(waiters_.next_deadline(), leases_.next_expiry());
  if (!consumer_expiry_.empty()) next = std::min(next, consumer_expiry_.begin()->first);
  if (!delayed_.empty()) next = std::min(next, delayed_.begin()->first.first);
  if (!expiry_.empty()) next = std::min(next, expiry_.begin()->first.first);
  return std::min(next, index_.next_expiry());
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
    for (WaiterSet::Ended& w : waiters_.TakeDue(now)) {
      if (auto* g = std::get_if<GetWaiter>(&w)) {
        d.Answer(std::move(g->cb),
                 Error{Errc::kQueueEmpty, Describe() + " stayed empty until the deadline"});
      } else if (auto* p = std::get_if<PutWaiter>(&w)) {
        d.Answer(std::move(p->cb), NoRoomError(p->blocked_on_memory));
      } else {
        d.Answer(
            std::move(std::get<JoinWaiter>(w).cb),
            Error{Errc::kJoinTimeout, Describe() + " still had " + std::to_string(Unfinished()) +
                                          " unfinished messages at the deadline"});
      }
    }
    // Each requeue goes to the head, so the last one requeued is delivered first:
    // walk backwards to keep the expired messages in the order they were leased.
    const std::vector<uint64_t> expired = leases_.Due(now);
    for (auto it = expired.rbegin(); it != expired.rend(); ++it) {
      EndLease(*it, LeaseEnd::kExpired, now, d);
    }
    while (!consumer_expiry_.empty() && consumer_expiry_.begin()->first <= now) {
      const uint64_t id = consumer_expiry_.begin()->second;
      ConsumerState& c = consumers_.at(id);
      EndHeld(c, c.held.TakeExpired(now), LeaseEnd::kExpired, now, d);
      IndexConsumer(id, c);
      if (c.turn == 0) TakeTurn(id, c);
    }
    index_.Expire(now);
    // Both run: each does at most a batch, and either may leave more.
    const bool more_delayed = PromoteDue(now);
    const bool more_expired = ExpireTtl(now, d);
    const bool more_due = more_delayed || more_expired;
    ServeWaiters(now, d);
    // The timer that called us is spent; the caller schedules the next one
    // (at once when due messages are left: the lock is let go in between).
    next = more_due ? now : NextDeadline();
    scheduled_ = next;
  }
  RunDeferred(d, now);
  return next;
}

void Queue::OnMemoryFreed(TimePoint now) {
  Deferred d;
  {
    std::lock_guard lock(mu_);
    memory_listener_ = false;  // the budget let go of our registration
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
    if (!d.retries.empty()) journal_->Retried(d.retries);
  }
  for (auto& cb : d.callbacks) cb();
  for (auto& [msg, why] : d.dead_letters) {
    Headers headers = msg->headers();
    const auto [death, legacy] = ReasonHeaders(why);
    headers[std::string(kHeaderDeathReason)] = std::string(death);
    headers[std::string(kHeaderDeadLetterReason)] = std::string(legacy);
    headers[std::string(kHeaderOriginalQueue)] = config_.name;
    headers[std::string(kHeaderOriginalId)] = std::to_string(msg->id());
    dead_letter_->AcceptDeadLetter(msg->payload(), headers, msg->priority(), now);
  }
  memory_->Release(d.bytes_freed, now);
  if (d.schedule != kNever && scheduler_ != nullptr)
    scheduler_->ScheduleAt(weak_from_this(), d.schedule);
  if (journal_ != nullptr) {
    if (auto carry = journal_->TakeCarry(); !carry.empty()) CarryForward(carry);
  }
  // Last: a wake-up may write a Consume response on this thread, and blocked
  // putters (memory) and the queue's next deadline should not wait for it.
  for (auto& outbox : d.wakes) outbox->Wake();
}

void Queue::CarryForward(const std::vector<std::pair<TimePoint, uint64_t>>& keys) {
  std::lock_guard lock(mu_);
  if (deleted_) return;
  std::vector<std::pair<const Message*, TimePoint>> still;
  for (const auto& key : keys) {
    if (auto it = delayed_.find(key); it != delayed_.end()) {
      still.emplace_back(it->second.msg.get(), key.first);
    }
  }
  journal_->Carry(still);
}

}  // namespace basin::core
