// The calls blocked on one queue: getters (blocked Gets, and the streaming
// consumers' turns in the same rotation), putters and joiners, each a FIFO by
// arrival, with one index of their deadlines and the per-queue cap on their
// number. Owned by a Queue and used under its mutex; it never calls a callback
// itself: what it takes out is handed back for the queue to answer after the
// lock is released.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "broker/core/errc.h"
#include "broker/core/message.h"
#include "broker/core/queue_types.h"
#include "broker/core/time.h"

namespace basin::core {

struct GetWaiter {
  TimePoint deadline;
  Duration visibility;
  size_t max_messages;
  uint64_t max_bytes;
  GetBatchCallback cb;
  uint64_t consumer = 0;  // set: a streaming consumer's turn in the rotation
};

// A batch waiting for room. msgs[i] goes to results[slots[i]]; a null msgs[i]
// was found to be a duplicate.
struct PutWaiter {
  TimePoint deadline;
  std::vector<MessagePtr> msgs;
  std::vector<std::string> dedup_ids;
  std::vector<size_t> slots;
  std::vector<PutResult> results;
  PutBatchCallback cb;
  std::function<void()> admitted;  // durable queues: see Queue::PutBatch
  std::string producer;            // idempotent produce: see BatchOrigin
  uint64_t first_sequence = 0;
  bool blocked_on_memory = false;
  // What the idempotency pass found (IdempotencyIndex::Resolve), kept so a
  // retry costs O(1) until the index forgets keys (its epoch changes).
  // Nothing is dropped from the batch until it is admitted.
  struct Resolution {
    uint64_t epoch = 0;
    size_t count = 0;    // messages that need room
    uint64_t bytes = 0;  // their bytes
    // Messages that take memory but no room until later (delayed), and
    // their bytes.
    size_t later = 0;
    uint64_t later_bytes = 0;
    TimePoint later_until = kNever;  // the earliest of their ready times: re-resolve after
    size_t grouped = 0;              // messages of an ordering group (either kind)
    uint64_t keys = 0;               // bytes the index will keep for them
    std::vector<std::pair<size_t, uint64_t>> duplicates;  // (msg, original id)
    std::vector<std::pair<size_t, size_t>> copies;        // (msg, its first in the batch)
  };
  std::optional<Resolution> resolved;
};

struct JoinWaiter {
  TimePoint deadline;
  JoinCallback cb;
};

class WaiterSet {
 public:
  using Getters = std::map<WaitId, GetWaiter>;
  using Putters = std::map<WaitId, PutWaiter>;
  using Joiners = std::map<WaitId, JoinWaiter>;
  using Ended = std::variant<GetWaiter, PutWaiter, JoinWaiter>;

  explicit WaiterSet(size_t max_waiters) : max_waiters_(max_waiters) {}

  // kTooManyWaiters when the cap is reached (`what` names the queue).
  Result<void> CheckCap(const std::string& what) const;

  // Each returns the new waiter's id; ids rise, so each map's order is
  // arrival order (FIFO service).
  WaitId AddGetter(GetWaiter g);
  WaitId AddPutter(PutWaiter p);
  WaitId AddJoiner(JoinWaiter j);
  // A streaming consumer's turn: a getter with no deadline, whose node is
  // reused from turn to turn so that a turn per message allocates nothing.
  WaitId AddTurn(uint64_t consumer, Getters::node_type& spare);
  Getters::node_type TakeTurn(WaitId turn);

  Getters& getters() { return getters_; }
  Putters& putters() { return putters_; }
  Joiners& joiners() { return joiners_; }
  const Getters& getters() const { return getters_; }
  size_t waiting_getters() const { return getters_.size() - turns_; }
  size_t waiting_putters() const { return putters_.size(); }
  size_t waiting_joiners() const { return joiners_.size(); }

  // Removal of the first (oldest) waiter of a kind, keeping the deadline
  // index in step. The caller has moved out what it needs.
  void PopGetter();
  void PopPutter();
  void PopJoiner();

  // The waiter `id`, taken out; nullopt if it already ended.
  std::optional<Ended> Take(WaitId id);
  // Waiters whose deadline is <= now, taken out in deadline order.
  std::vector<Ended> TakeDue(TimePoint now);
  // Every waiter but the consumers' turns (the queue ends those itself).
  std::vector<Ended> TakeAll();
  std::vector<PutWaiter> TakePutters();
  std::vector<GetWaiter> TakeGetters();
  std::vector<JoinWaiter> TakeJoiners();

  TimePoint next_deadline() const;

  // A closure that answers `w` with `e`: run it after the lock is released.
  static std::function<void()> Fail(Ended&& w, Error e);

 private:
  WaitId Index(TimePoint deadline);
  // Every waiter of `waiters` (putters or joiners), out of the deadline index.
  template <typename Map>
  std::vector<typename Map::mapped_type> TakeEvery(Map& waiters);

  const size_t max_waiters_;
  Getters getters_;
  Putters putters_;
  Joiners joiners_;
  size_t turns_ = 0;  // entries of getters_ that are consumers' turns
  std::set<std::pair<TimePoint, WaitId>> deadlines_;
  WaitId next_id_ = 1;
};

}  // namespace basin::core
