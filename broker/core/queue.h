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
// Invariant: unfinished == size + in_flight. A message is counted from the
// moment it is enqueued until task_done or dead-lettering.
//
// Durable queues (a journal is attached): a put is admitted under the lock —
// room taken, ids assigned, its record handed to the journal — but stays
// *pending* (counted against max_size and max_bytes, invisible to getters,
// unanswered) until the journal says the record is durable. Pending batches
// become ready in admission order; a batch whose write failed gives its room
// back and is answered with the journal's error.
#pragma once

#include <cstdint>
#include <deque>
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
#include "broker/core/memory_budget.h"
#include "broker/core/message.h"
#include "broker/core/producer_sequences.h"
#include "broker/core/queue_journal.h"
#include "broker/core/queue_types.h"
#include "broker/core/time.h"

namespace basin::core {

// Settings fixed when the queue is created.
struct QueueConfig {
  std::string name;
  uint64_t max_size = 0;  // 0 = unbounded
  Duration visibility_timeout{};
  uint32_t max_deliveries = 0;  // 0 = unlimited
  std::string dead_letter_queue;
  uint64_t max_bytes = 0;  // 0 = unbounded
  // Kept in the broker's data directory (a journal is attached): survives a
  // restart. See QueueJournal.
  bool durable = false;

  bool operator==(const QueueConfig&) const = default;
};

// Broker-wide limits each queue enforces.
struct QueueLimits {
  uint64_t max_message_bytes = 1 << 20;
  size_t max_waiters = 100'000;
  Duration max_lease = std::chrono::hours(12);
  // How long a put's dedup_id is remembered, and how many are kept at most
  // (the oldest are forgotten first).
  Duration dedup_window = std::chrono::minutes(2);
  size_t max_dedup_ids = 1'000'000;
};

// One streaming consumer, as stats show it.
struct ConsumerStats {
  uint64_t id = 0;
  uint32_t prefetch = 0;
  uint64_t in_flight = 0;  // delivered and not yet acked or released
  uint64_t delivered = 0;
  uint64_t acked = 0;
};

struct QueueStats {
  uint64_t size = 0;
  uint64_t bytes = 0;
  bool full = false;
  bool empty = true;
  uint64_t unfinished = 0;
  uint64_t in_flight = 0;
  uint64_t waiting_getters = 0;
  uint64_t waiting_putters = 0;
  uint64_t waiting_joiners = 0;
  uint64_t total_put = 0;
  uint64_t total_delivered = 0;
  uint64_t total_done = 0;
  uint64_t total_redelivered = 0;
  uint64_t total_dead_lettered = 0;
  uint64_t total_rejected = 0;  // routed copies refused (Offer)
  bool closed = false;
  std::vector<ConsumerStats> consumers;
};

using WaitId = uint64_t;
using PutCallback = std::function<void(Result<uint64_t>)>;  // the message id
using PutBatchCallback = std::function<void(Result<std::vector<PutResult>>)>;
using GetCallback = std::function<void(Result<Delivery>)>;
using GetBatchCallback = std::function<void(Result<std::vector<Delivery>>)>;
using JoinCallback = std::function<void(Result<void>)>;

// Header names the broker sets on dead letters; `basin-` is reserved for it.
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
  // Gives a delivery back to the head of the queue; returns true when it was
  // dead-lettered instead.
  Result<bool> Release(std::string_view tag, TimePoint now);

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
  // Deliveries and notices go to the returned outbox; `wake` is called (never
  // under a lock) when an idle outbox gets something.
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
  // Gives the listed deliveries back to the head of the queue.
  void ConsumerRelease(uint64_t consumer, const std::vector<uint64_t>& tags, uint64_t up_to,
                       TimePoint now);
  // Restarts the ack_timeout of the tags and of every held tag <= up_to;
  // unknown tags are reported.
  void ConsumerExtend(uint64_t consumer, const std::vector<uint64_t>& tags, uint64_t up_to,
                      TimePoint now);
  // Ends the consumer: everything it holds goes back to the head of the
  // queue at once (delivery count + 1 at the next hand-out), and its outbox
  // ends with `why`. Idempotent.
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
  void AcceptDeadLetter(MessagePtr msg, TimePoint now);

  QueueStats Stats() const;

  TimePoint ExpireDue(TimePoint now) override;
  void OnMemoryFreed(TimePoint now) override;

 private:
  enum class LeaseEnd : uint8_t { kDone, kExpired, kReleased, kDeadLettered };
  // A unary Get's delivery. A stream's deliveries are held by its consumer.
  struct Lease {
    MessagePtr msg;
    TimePoint expiry;
  };
  struct Getter {
    TimePoint deadline;
    Duration visibility;
    size_t max_messages;
    uint64_t max_bytes;
    GetBatchCallback cb;
    uint64_t consumer = 0;  // set: a streaming consumer's turn in the rotation
  };
  using Getters = std::map<WaitId, Getter>;
  struct ConsumerState {
    uint32_t prefetch = 0;
    Duration ack_timeout{};
    std::shared_ptr<ConsumerOutbox> outbox;
    HeldDeliveries held;
    uint64_t delivered = 0;
    uint64_t acked = 0;
    WaitId turn = 0;  // its entry in getters_, or 0
    // Its last turn's node, kept so that taking a turn per message, as the
    // rotation asks, allocates nothing.
    Getters::node_type spare_turn;
  };
  // A batch waiting for room. msgs[i] goes to results[slots[i]]; a null
  // msgs[i] was found to be a duplicate.
  struct Putter {
    TimePoint deadline;
    std::vector<MessagePtr> msgs;
    std::vector<std::string> dedup_ids;
    std::vector<size_t> slots;
    std::vector<PutResult> results;
    PutBatchCallback cb;
    std::function<void()> admitted;  // durable queues: see PutBatch
    std::string producer;            // idempotent produce: see BatchOrigin
    uint64_t first_sequence = 0;
    bool blocked_on_memory = false;
  };
  struct Joiner {
    TimePoint deadline;
    JoinCallback cb;
  };
  enum class Room : uint8_t { kYes, kFull, kNoMemory };

  // Work collected under the lock and done after it is released: answering
  // callers, moving dead letters, freeing memory (which may call back into a
  // queue) and asking for a timer.
  struct Deferred {
    std::vector<std::function<void()>> callbacks;
    std::vector<MessagePtr> dead_letters;
    uint64_t bytes_freed = 0;
    TimePoint schedule = kNever;
    std::vector<std::shared_ptr<ConsumerOutbox>> wakes;
    // For the journal: ids handed out, and ids that left the queue.
    std::vector<uint64_t> delivered;
    std::vector<uint64_t> done;
  };
  // A durable put waiting for its records to be durable (see the top).
  struct PendingBatch {
    uint64_t seq = 0;
    std::vector<MessagePtr> msgs;
    uint64_t bytes = 0;
    PutBatchCallback cb;  // may be empty (dead letters, routed copies)
    std::vector<PutResult> results;
    // Forgotten if the write fails, so a resend is not taken for a repeat.
    PutKeys keys;
    bool resolved = false;
    std::optional<Error> error;
  };
  void RunDeferred(Deferred& d, TimePoint now);

  // With `wait_for_memory`, a put that does not fit the broker's budget
  // registers this queue to be woken when memory is freed.
  Room CheckRoom(uint64_t bytes, bool wait_for_memory = true, size_t count = 1);
  // Enqueues the putter's batch if it fits now and queues its answer in `d`
  // (for a durable batch: its `admitted` call; the answer waits for the
  // journal); else says why not and leaves the putter as it was.
  Room TryAdmit(Putter& p, TimePoint now, Deferred& d);
  std::optional<uint64_t> FindDedup(const std::string& dedup_id, TimePoint now);
  void RecordDedup(const std::string& dedup_id, uint64_t id, TimePoint now);
  Error NoRoomError(bool memory) const;
  // kMessageTooLarge when a message of `bytes` can never fit max_bytes.
  std::optional<Error> TooLargeForQueue(uint64_t bytes) const;
  uint64_t Enqueue(MessagePtr msg);
  // Enqueue, or for a durable queue a pending batch of one; `written` as
  // for Offer.
  uint64_t EnqueueOrJournal(MessagePtr msg, QueueJournal::Committed written = nullptr);
  bool OutOfDeliveries(const Message& msg) const;
  void DeadLetter(MessagePtr msg, Deferred& d);
  // Durable queues: hands admitted messages (ids set) to the journal and
  // holds them pending until it calls OnCommitted.
  void Journal(PendingBatch batch);
  void OnCommitted(uint64_t seq, std::optional<Error> error);
  // Takes the oldest ready message out for delivery.
  MessagePtr TakeReady(Deferred& d);
  Delivery Deliver(Duration visibility, TimePoint now, Deferred& d);
  std::vector<Delivery> DeliverBatch(const Getter& g, TimePoint now, Deferred& d);
  void ServeConsumer(uint64_t consumer, TimePoint now, Deferred& d);
  void TakeTurn(uint64_t consumer, ConsumerState& c);
  void EndConsumers(const Error& why, Deferred& d);
  // Ends the consumer's listed leases and every one with a tag <= up_to
  // (kDone or kReleased); tags it does not hold are reported on its outbox.
  void EndConsumerLeases(uint64_t consumer, const std::vector<uint64_t>& tags, uint64_t up_to,
                         bool done, TimePoint now);
  // Takes a consumer (already out of consumers_) out of the rotation, returns
  // what it holds to the head in lease order, and ends its outbox.
  void ReleaseConsumer(ConsumerState& c, Error why, Deferred& d);
  void ServeWaiters(TimePoint now, Deferred& d);
  Result<uint64_t> FindLease(std::string_view tag) const;
  void EndLease(uint64_t lease, LeaseEnd how, Deferred& d);
  // Ends deliveries taken from a consumer's holdings (in tag order).
  void EndHeld(ConsumerState& c, std::vector<HeldDeliveries::Taken> taken, LeaseEnd how,
               Deferred& d);
  // What happens to a message whose delivery ended: done, dead-lettered, or
  // back to the head of the queue. `lease` is the unary lease, or 0.
  void Settle(MessagePtr msg, uint64_t lease, LeaseEnd how, Deferred& d);
  void RecordEnded(uint64_t lease, LeaseEnd how);
  void FailAllWaiters(Errc code, const std::string& message, Deferred& d);
  WaitId NewWaiter(TimePoint deadline);
  Result<void> CheckCanWait(TimePoint now, TimePoint deadline) const;
  void ArmDeadline(Deferred& d);
  TimePoint NextDeadline() const;
  uint64_t InFlight() const { return leases_.size() + stream_held_; }
  uint64_t Unfinished() const { return ready_.size() + InFlight(); }
  // Closed, and nothing left or on its way: getters are told it is drained.
  bool Drained() const { return closed_ && Unfinished() == 0 && pending_.empty(); }
  Duration EffectiveVisibility(Duration requested) const;
  std::string Describe() const;

  const QueueConfig config_;
  const uint64_t incarnation_;
  const QueueLimits limits_;
  MemoryBudget* const memory_;
  DeadlineScheduler* const scheduler_;
  const std::shared_ptr<Queue> dead_letter_;
  const std::shared_ptr<QueueJournal> journal_;

  mutable std::mutex mu_;
  std::deque<MessagePtr> ready_;
  uint64_t ready_bytes_ = 0;
  std::unordered_map<uint64_t, Lease> leases_;
  std::set<std::pair<TimePoint, uint64_t>> lease_expiry_;
  uint64_t stream_held_ = 0;  // deliveries held by streaming consumers
  // Durable puts admitted and not yet durable, in admission order.
  std::deque<PendingBatch> pending_;
  uint64_t pending_count_ = 0;
  uint64_t pending_bytes_ = 0;
  uint64_t next_batch_ = 1;
  // Recently ended leases, so a late TaskDone can say why it is refused.
  std::unordered_map<uint64_t, LeaseEnd> ended_;
  std::deque<uint64_t> ended_order_;

  // Waiter ids rise, so each map's order is arrival order (FIFO service).
  Getters getters_;
  std::map<WaitId, Putter> putters_;
  std::map<WaitId, Joiner> joiners_;
  std::map<uint64_t, ConsumerState> consumers_;
  uint64_t next_consumer_ = 1;
  size_t consumer_turns_ = 0;  // entries of getters_ that are consumers
  // Dedup ids of recent puts: id -> (message id, when), and arrival order.
  std::unordered_map<std::string, std::pair<uint64_t, TimePoint>> dedup_;
  std::deque<std::pair<TimePoint, std::string>> dedup_order_;
  ProducerSequences sequences_{limits_.dedup_window};
  std::set<std::pair<TimePoint, WaitId>> wait_deadlines_;

  WaitId next_wait_id_ = 1;
  uint64_t next_message_id_ = 1;
  uint64_t next_lease_ = 1;
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
};

}  // namespace basin::core
