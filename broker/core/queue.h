// One named bounded queue: ready messages, leases on delivered ones, and the
// calls blocked on it. All of the queue's state is owned here, behind one mutex.
//
// API:
//   Put / Get / Join   may block. The caller passes `now` and an absolute
//                      `deadline` (<= now: never wait). The callback runs exactly
//                      once, never under the lock: inline before the call
//                      returns, or later from whichever thread changes the queue
//                      (another Put/Get/TaskDone, ExpireDue, Cancel, Delete).
//                      Before anything can call back, `*wait_id` is written, so
//                      the caller may Cancel(*wait_id) once the call returns.
//   TaskDone / ExtendLease / Release
//                      act on the lease a delivery tag names; never block.
//   Cancel             ends a blocked call whose client went away (kCancelled).
//   Close / Delete / Shutdown
//                      end-of-stream, removal, broker stop.
//   ExpireDue          called by the DeadlineScheduler; ends due waits and leases.
//
// Conservation: total_put == total_done + total_dead_lettered + unfinished,
// where unfinished == size + in_flight + delayed: a message is counted from
// the moment it is enqueued (or restored) until task_done or dead-lettering; a deleted
// queue's messages leave with it. The memory budget holds exactly what the queue
// keeps (AccountedBytes()).
//
// The parts, each under the queue's one mutex: WaiterSet (blocked calls and
// their deadlines), LeaseTable (unary deliveries), HeldDeliveries (each
// streaming consumer's), IdempotencyIndex (dedup ids, producer sequences),
// PendingPuts (durable puts waiting for the disk) and Deferred (what is done
// after the lock is released). Queue keeps the policy: admission, the
// rotation of getters and consumers, settling a delivery's end.
//
// Delayed messages (MessageAttrs::ready_at in the future) wait in one index
// by (ready time, id) and become ready, in that order, when ExpireDue passes
// their time: at most kDueBatch a pass. Until then they are unfinished and
// hold memory, but take no max_size or max_bytes room.
//
// Durable queues (a journal is attached): a put is admitted under the lock —
// room taken, ids assigned, its record handed to the journal — but stays
// *pending* (counted against max_size and max_bytes, invisible to getters,
// unanswered) until the journal says the record is durable. Pending batches
// become ready in admission order; a batch whose write failed gives its room
// back and is answered with the journal's error.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "broker/core/consumer_outbox.h"
#include "broker/core/deadline_scheduler.h"
#include "broker/core/errc.h"
#include "broker/core/held_deliveries.h"
#include "broker/core/idempotency_index.h"
#include "broker/core/lease_table.h"
#include "broker/core/lock_rank.h"
#include "broker/core/memory_budget.h"
#include "broker/core/message.h"
#include "broker/core/pending_puts.h"
#include "broker/core/queue_config.h"
#include "broker/core/queue_journal.h"
#include "broker/core/queue_types.h"
#include "broker/core/ready_list.h"
#include "broker/core/time.h"
#include "broker/core/waiter_set.h"

namespace basin::core {

// Header names the broker sets on dead letters; `basin-` is reserved for it.
// basin-death-reason says why (max-deliveries, rejected, expired), as
// RabbitMQ's x-death does; basin-dead-letter-reason is the older header
// (delivery_limit, rejected, expired), kept for consumers that read it.
inline constexpr std::string_view kHeaderDeathReason = "basin-death-reason";
inline constexpr std::string_view kHeaderDeadLetterReason = "basin-dead-letter-reason";
inline constexpr std::string_view kHeaderOriginalQueue = "basin-original-queue";
inline constexpr std::string_view kHeaderOriginalId = "basin-original-id";
inline constexpr std::string_view kHeaderTopic = "basin-topic";

class Queue : public Expirable, public MemoryListener, public std::enable_shared_from_this<Queue> {
 public:
  // `incarnation` must be unique across every queue the broker ever created, so
  // delivery tags cannot outlive the queue they were issued by. `dead_letter`
  // is the resolved config.dead_letter_queue (or null).
  // `journal` (null for an in-memory queue) records what happens to the queue.
  Queue(QueueConfig config, uint64_t incarnation, QueueLimits limits, MemoryBudget* memory,
        DeadlineScheduler* scheduler, std::shared_ptr<Queue> dead_letter,
        std::shared_ptr<QueueJournal> journal = nullptr);
  ~Queue() override;
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;

  const QueueConfig& config() const { return config_; }
  const std::string& name() const { return config_.name; }

  // Rebuilds a durable queue from its log, before anyone uses it: `messages`
  // (ids and delivery counts set) become ready in the order given; new ids
  // start at `next_id`. A message out of deliveries is dead-lettered.
  // `keys` are the dedup ids and producer sequences of recent puts, so a
  // resend after the restart is still recognised.
  void Restore(std::vector<MessagePtr> messages, uint64_t next_id, bool closed,
               const std::vector<PutKeys>& keys, TimePoint now);
  // A durable queue writes down a topic binding made or removed (the
  // TopicRouter holds the binding itself); a no-op for in-memory queues.
  void RecordBinding(const std::string& pattern, bool bound);

  // Appends a message, waiting until `deadline` while the queue is full (or the
  // broker is at --max-memory). Putters are admitted first come, first served.
  void Put(std::string_view payload, const Headers& headers, TimePoint now, TimePoint deadline,
           WaitId* wait_id, PutCallback cb);
  // Puts a batch all or nothing: it waits until every message fits. Messages
  // that fail validation get their own error and are left out; a message whose
  // dedup_id was put within the dedup window is answered with the original id
  // and not enqueued again. A batch that can never fit (more valid messages
  // than max_size, or more bytes than max_bytes) fails with kInvalidArgument.
  // With an origin, a message whose sequence that producer already put is a
  // duplicate too (answered with the original id). On a durable queue,
  // `admitted` (optional) runs once the batch has its room, before the
  // answer that waits for the disk: a stream may read its next batch then.
  void PutBatch(const std::vector<MessageSpec>& batch, TimePoint now, TimePoint deadline,
                WaitId* wait_id, PutBatchCallback cb, BatchOrigin origin = {},
                std::function<void()> admitted = nullptr);
  // Leases the oldest ready message for `visibility` (0 = the queue's default),
  // waiting until `deadline` while none is ready. Getters are served in order.
  void Get(Duration visibility, TimePoint now, TimePoint deadline, WaitId* wait_id, GetCallback cb);
  // Same, but answers with up to `max_messages` ready messages (and no more
  // than `max_bytes`, though always at least one) as soon as one is ready.
  void GetBatch(size_t max_messages, uint64_t max_bytes, Duration visibility, TimePoint now,
                TimePoint deadline, WaitId* wait_id, GetBatchCallback cb);
  // Completes once unfinished == 0, or fails at `deadline`.
  void Join(TimePoint now, TimePoint deadline, WaitId* wait_id, JoinCallback cb);
  // Ends a blocked call with kCancelled; a no-op if it already ended.
  void Cancel(WaitId id);

  Result<void> TaskDone(std::string_view tag, TimePoint now);
  // Sets the lease's expiry to now + duration (capped at max_lease); returns
  // the granted duration.
  Result<Duration> ExtendLease(std::string_view tag, Duration duration, TimePoint now);
  // What became of a released delivery.
  struct Released {
    bool dead_lettered = false;
    Duration delay{};  // before it is ready again (0: at once)
  };
  // Gives a delivery back to the head of the queue, after `delay` (absent:
  // the queue's retry_backoff for its delivery count; zero: at once) — or,
  // with `reject`, to the dead-letter queue at once. A delay above kMaxDelay
  // is kInvalidArgument.
  Result<Released> Release(std::string_view tag, TimePoint now,
                           std::optional<Duration> delay = std::nullopt, bool reject = false);

  // Takes back deliveries whose answer never reached the client: to the
  // head at once, in the order they were handed out, their delivery counts
  // as before (they were never delivered).
  void TakeBack(const std::vector<std::string>& tags, TimePoint now);

  // Returns true if the queue was already closed.
  bool Close(TimePoint now);
  // Ends every waiter with kQueueDeleted and drops every message; returns how
  // many were dropped. The object stays valid for callers still holding it.
  uint64_t Delete();
  // Ends every waiter with kShutdown and refuses new waits.
  void Shutdown();

  // Streaming consumers (the Consume RPC). A consumer takes turns with blocked
  // Gets in one first-come rotation and is handed messages while it holds
  // fewer than `prefetch`. Its deliveries are leased to the stream: no timer,
  // unless `ack_timeout` is positive, whose expiry requeues the message and
  // reports the tag as expired. Tags are a per-stream sequence from 1.
  // Deliveries and notices go to the returned outbox; `wake` is called when an
  // idle outbox gets something, never under the queue's lock, but on any
  // thread that changes the queue — the committer's among them, which holds
  // its commit lock then (core/shared_thread.h says which threads those are).
  struct Attached {
    uint64_t id = 0;
    std::shared_ptr<ConsumerOutbox> outbox;
  };
  Result<Attached> AttachConsumer(uint32_t prefetch, Duration ack_timeout,
                                  std::function<void()> wake, TimePoint now);
  // Task_done for each listed tag and every tag <= up_to (0: none). Tags the
  // consumer does not hold are reported on its outbox.
  void ConsumerAck(uint64_t consumer, const std::vector<uint64_t>& tags, uint64_t up_to,
                   TimePoint now);
  // Gives the listed deliveries back to the head of the queue, after
  // `delay` as for Release.
  void ConsumerRelease(uint64_t consumer, const std::vector<uint64_t>& tags, uint64_t up_to,
                       TimePoint now, std::optional<Duration> delay = std::nullopt);
  // Sends the listed deliveries to the dead-letter queue at once.
  void ConsumerReject(uint64_t consumer, const std::vector<uint64_t>& tags, TimePoint now);
  // Restarts the ack_timeout of the tags and of every held tag <= up_to;
  // unknown tags are reported.
  void ConsumerExtend(uint64_t consumer, const std::vector<uint64_t>& tags, uint64_t up_to,
                      TimePoint now);
  // Ends the consumer: what it holds goes back to the head of the queue —
  // deliveries it wrote after the queue's retry_backoff (delivery count + 1
  // at the next hand-out), unwritten ones at once, as they were — and its
  // outbox ends with `why`. Idempotent.
  void DetachConsumer(uint64_t consumer, Error why, TimePoint now);

  // Puts a copy routed from a topic binding: never waits. Fails, and counts a
  // rejection in total_rejected, when the queue is closed, deleted, full or
  // the broker is at --max-memory. Trusted: `basin-` headers are allowed.
  // On a durable queue an accepted copy is pending until written; `written`
  // (optional) then runs once, never inline, with the write's error if it
  // failed. It never runs for an in-memory queue or a refused copy.
  Result<uint64_t> Offer(std::string_view payload, const Headers& headers, TimePoint now,
                         QueueJournal::Committed written = nullptr);

  // Receives a dead letter from another queue: ignores the bound and the
  // closed state, never blocks, and counts the message as unfinished here.
  // It keeps its priority; this queue's message_ttl applies from now.
  void AcceptDeadLetter(std::string_view payload, const Headers& headers, uint8_t priority,
                        TimePoint now);

  QueueStats Stats() const;
  // Bytes the queue holds against the broker's memory budget, counted by
  // walking everything it keeps (messages ready, leased, held by consumers
  // or pending, idempotency keys): what the
  // budget's books must show. For tests; costs O(messages).
  uint64_t AccountedBytes() const;

  TimePoint ExpireDue(TimePoint now) override;
  void OnMemoryFreed(TimePoint now) override;

 private:
  using LeaseEnd = LeaseTable::End;
  struct ConsumerState {
    uint32_t prefetch = 0;
    Duration ack_timeout{};
    std::shared_ptr<ConsumerOutbox> outbox;
    HeldDeliveries held;
    uint64_t delivered = 0;
    uint64_t acked = 0;
    WaitId turn = 0;  // its entry in the waiters' getters, or 0
    // Its last turn's node, kept so that taking a turn per message, as the
    // rotation asks, allocates nothing.
    WaiterSet::Getters::node_type spare_turn;
    TimePoint indexed_expiry = kNever;  // its entry in consumer_expiry_
  };
  // kOriginalPending: the batch repeats a durable put whose write is not yet
  // answered; it waits for that answer (a failed write makes it new work).
  enum class Room : uint8_t { kYes, kFull, kNoMemory, kOriginalPending };

  // Work collected under the lock and done after it is released: answering
  // callers, moving dead letters, freeing memory (which may call back into a
  // queue) and asking for a timer.
  enum class DeathReason : uint8_t { kMaxDeliveries, kRejected, kExpired };
  // The values of basin-death-reason and basin-dead-letter-reason.
  static std::pair<std::string_view, std::string_view> ReasonHeaders(DeathReason why);
  struct Deferred {
    std::vector<std::function<void()>> callbacks;
    std::vector<std::pair<MessagePtr, DeathReason>> dead_letters;
    uint64_t bytes_freed = 0;
    TimePoint schedule = kNever;
    std::vector<std::shared_ptr<ConsumerOutbox>> wakes;
    // Expired messages HasReady may still drop while the lock is held (the
    // timer takes the rest).
    size_t expire_budget = kDueBatch;
    // For the journal: ids handed out, and ids that left the queue.
    std::vector<uint64_t> delivered;
    std::vector<uint64_t> done;
    // Retry delays: (id, deliveries, ready time).
    std::vector<QueueJournal::Retry> retries;

    template <typename Callback, typename Value>
    void Answer(Callback&& cb, Value&& v) {
      callbacks.push_back([cb = std::forward<Callback>(cb), v = std::forward<Value>(v)]() mutable {
        cb(std::move(v));
      });
    }
  };
  void RunDeferred(Deferred& d, TimePoint now);

  // With `wait_for_memory`, a put that does not fit the broker's budget
  // registers this queue (once) to be woken when memory is freed. `keys`:
  // bytes the idempotency index will keep, charged with the messages.
  // `later`: bytes of messages that take memory now but room only later
  // (delayed ones).
  Room CheckRoom(uint64_t bytes, bool wait_for_memory = true, size_t count = 1, uint64_t keys = 0,
                 uint64_t later = 0);
  // Enqueues the putter's batch if it fits now and queues its answer in `d`
  // (for a durable batch: its `admitted` call; the answer waits for the
  // journal); else says why not and leaves the putter as it was.
  Room TryAdmit(PutWaiter& p, TimePoint now, Deferred& d);
  // Charges (or frees, through `d`) the change in the index's memory.
  void SyncIndexMemory(Deferred& d);
  Error NoRoomError(bool memory) const;
  // Checks what a client asked of a message beyond its bytes, and drops what
  // has no effect (a delay already past).
  Result<uint64_t> CheckAttrs(MessageAttrs& attrs, TimePoint now) const;
  // kMessageTooLarge when a message of `bytes` can never fit max_bytes.
  std::optional<Error> TooLargeForQueue(uint64_t bytes) const;
  // Gives a new message its id and counts it put, then Arrive.
  uint64_t Enqueue(MessagePtr msg, TimePoint now);
  // Enqueue, or for a durable queue a pending batch of one; `written` as
  // for Offer.
  uint64_t EnqueueOrJournal(MessagePtr msg, TimePoint now,
                            QueueJournal::Committed written = nullptr);
  // The one way into the queue for a message that was put (or restored):
  // ready at the tail, or delayed until its ready time.
  void Arrive(MessagePtr msg, TimePoint now);
  // Writes again the puts of the listed messages still delayed, for the
  // journal to let go of the old part of its log (QueueJournal::TakeCarry).
  void CarryForward(const std::vector<std::pair<TimePoint, uint64_t>>& keys);
  // Where a message with attributes is (Message::place): the TTL index finds
  // it there.
  enum Place : uint8_t { kOut = 0, kInReady = 1, kInDelayed = 2, kInBacklog = 3 };
  // A grouped message's group is done with it (finished or dead-lettered):
  // the group's next message, if any, becomes ready.
  void AdvanceGroup(std::string_view group, Deferred& d);
  // Enters a message with an expiry into the TTL index, at `place`.
  void Track(Message& msg, Place place);
  // Takes it out (handed out, or gone).
  void Untrack(Message& msg);
  // Dead-letters (kExpired) what expired by `now` while ready or delayed, at
  // most kDueBatch; returns whether any expired one is left.
  bool ExpireTtl(TimePoint now, Deferred& d);
  // Whether a message is ready to hand out, after dropping expired ones
  // from the head (so a get never hands out an expired message that the
  // timer has not reached yet).
  bool HasReady(TimePoint now, Deferred& d);
  // Makes delayed messages whose time has come ready, at most kDueBatch;
  // returns whether any due one is left for the next pass.
  bool PromoteDue(TimePoint now);
  bool OutOfDeliveries(const Message& msg) const;
  // `was_out`: the message was its group's one out (not in a backlog).
  void DeadLetter(MessagePtr msg, DeathReason why, Deferred& d, bool was_out = true);
  // How long a message whose lease ended waits before it is ready again.
  Duration RetryDelay(const Message& msg, std::optional<Duration> asked) const;
  // Durable queues: hands admitted messages (ids set) to the journal and
  // holds them pending until it calls OnCommitted.
  void Journal(PendingBatch batch);
  void OnCommitted(uint64_t seq, std::optional<Error> error, TimePoint now);
  // Takes the oldest ready message out for delivery.
  MessagePtr TakeReady(Deferred& d);
  // Applies the queue's defaults (message_ttl) to a new message's attributes.
  MessageAttrs WithDefaults(MessageAttrs attrs, TimePoint now) const;
  Delivery Deliver(Duration visibility, TimePoint now, Deferred& d);
  std::vector<Delivery> DeliverBatch(const GetWaiter& g, TimePoint now, Deferred& d);
  void ServeConsumer(uint64_t consumer, TimePoint now, Deferred& d);
  void TakeTurn(uint64_t consumer, ConsumerState& c);
  void EndConsumers(const Error& why, TimePoint now, Deferred& d);
  // Ends the consumer's listed leases and every one with a tag <= up_to
  // (`how`: kDone, kReleased or kRejected; `delay` for kReleased); tags it
  // does not hold are reported on its outbox.
  void EndConsumerLeases(uint64_t consumer, const std::vector<uint64_t>& tags, uint64_t up_to,
                         LeaseEnd how, TimePoint now, std::optional<Duration> delay = std::nullopt);
  // Takes a consumer (already out of consumers_) out of the rotation, returns
  // what it holds to the head in lease order, and ends its outbox.
  void ReleaseConsumer(uint64_t id, ConsumerState& c, Error why, TimePoint now, Deferred& d);
  // Keeps consumer_expiry_ in step with the consumer's earliest expiry.
  void IndexConsumer(uint64_t id, ConsumerState& c);
  void ServeWaiters(TimePoint now, Deferred& d);
  // `delay` as for Release, for kReleased; otherwise the backoff applies.
  LeaseEnd EndLease(uint64_t lease, LeaseEnd how, TimePoint now, Deferred& d,
                    std::optional<Duration> delay = std::nullopt, Duration* waits = nullptr);
  // A delivery taken back before it reached its client: not a delivery at
  // all, so it goes back to the head as it was (no retry delay, no count).
  void Unsend(MessagePtr msg);
  // Ends deliveries taken from a consumer's holdings (in tag order).
  void EndHeld(ConsumerState& c, std::vector<HeldDeliveries::Taken> taken, LeaseEnd how,
               TimePoint now, Deferred& d, std::optional<Duration> delay = std::nullopt);
  // What happens to a message whose delivery ended: done, dead-lettered, or
  // back to the head of the queue (after a retry delay). Returns how it
  // ended; `*waits` (optional) gets the retry delay.
  LeaseEnd Settle(MessagePtr msg, LeaseEnd how, TimePoint now, Deferred& d,
                  std::optional<Duration> delay = std::nullopt, Duration* waits = nullptr);
  // Back to the head of the ready messages.
  void Requeue(MessagePtr msg);
  // Back to the head once `at` comes.
  void RequeueAt(MessagePtr msg, TimePoint at, Deferred& d);
  void FailAllWaiters(const Error& e, Deferred& d);
  Result<void> CheckCanWait(TimePoint now, TimePoint deadline) const;
  void ArmDeadline(Deferred& d);
  TimePoint NextDeadline() const;
  uint64_t InFlight() const { return leases_.size() + stream_held_; }
  uint64_t Unfinished() const {
    return ready_.size() + backlog_count_ + InFlight() + delayed_.size();
  }
  // Closed, and nothing left or on its way: getters are told it is drained.
  bool Drained() const { return closed_ && Unfinished() == 0 && pending_.empty(); }
  Duration EffectiveVisibility(Duration requested) const;
  std::string Describe() const;

  const QueueConfig config_;
  const QueueLimits limits_;
  MemoryBudget* const memory_;
  DeadlineScheduler* const scheduler_;
  const std::shared_ptr<Queue> dead_letter_;
  const std::shared_ptr<QueueJournal> journal_;

  mutable RankedMutex<LockRank::kQueue> mu_;
  ReadyList ready_;
  // Messages not ready before their time, by (ready time, id): those due
  // together become ready in id (put) order.
  struct DelayedEntry {
    MessagePtr msg;
    bool to_head = false;  // a retry: back to the head, as an immediate release would
  };
  std::map<std::pair<TimePoint, uint64_t>, DelayedEntry> delayed_;
  uint64_t delayed_bytes_ = 0;
  // Ordering groups with a message in the queue. At most one message of a
  // group is out — ready, handed out, or waiting a retry — and the others
  // wait in its backlog, in put order, taking room as ready ones do.
  struct Group {
    bool out = false;
    std::unique_ptr<HoleDeque> backlog;  // made for a group's second message
  };
  // A live group's cost against --max-memory, beyond its messages' bytes
  // (which count its name): a hash node; and a backlog's deque.
  static constexpr uint64_t kGroupBytes = 96;
  static constexpr uint64_t kBacklogBytes = 640;
  struct GroupHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, Group, GroupHash, std::equal_to<>> groups_;
  uint64_t groups_bytes_ = 0;  // charged for groups_ (kGroupBytes, kBacklogBytes)
  uint64_t backlog_count_ = 0;
  uint64_t backlog_bytes_ = 0;
  // Ready or delayed messages with an expiry, by (expiry, id). A message
  // handed out leaves it: its expiry is checked when its lease ends.
  std::map<std::pair<TimePoint, uint64_t>, Message*> expiry_;
  LeaseTable leases_;
  uint64_t stream_held_ = 0;  // deliveries held by streaming consumers
  PendingPuts pending_;
  WaiterSet waiters_;
  IdempotencyIndex index_;
  uint64_t index_charged_ = 0;    // the index's bytes charged to memory_
  bool memory_listener_ = false;  // registered with memory_, not yet woken

  std::map<uint64_t, ConsumerState> consumers_;
  uint64_t next_consumer_ = 1;
  // Consumers holding deliveries with an ack_timeout, by earliest expiry.
  std::set<std::pair<TimePoint, uint64_t>> consumer_expiry_;

  uint64_t next_message_id_ = 1;
  TimePoint scheduled_ = kNever;
  bool closed_ = false;
  bool deleted_ = false;
  bool shutting_down_ = false;

  uint64_t total_put_ = 0;
  uint64_t total_delivered_ = 0;
  uint64_t total_done_ = 0;
  uint64_t total_redelivered_ = 0;
  uint64_t total_dead_lettered_ = 0;
  uint64_t total_rejected_ = 0;
  uint64_t total_expired_ = 0;
};

}  // namespace basin::core
