// The unary deliveries of one queue (Get, not the Consume stream, whose
// deliveries its consumer holds in HeldDeliveries): each message handed out
// is leased under a number, named on the wire by a delivery tag, until
// task_done, release or the lease's expiry. How recent leases ended is
// remembered, one bit each in a fixed window of lease numbers, so that a late
// call can be told why it is refused: the record costs the same 8 KiB however
// many leases a client makes end — fixed per-queue bookkeeping, like the Queue
// itself, bounded by the cap on queues rather than charged to --max-memory.
// Owned by a Queue and used under its mutex.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "broker/core/errc.h"
#include "broker/core/message.h"
#include "broker/core/time.h"

namespace basin::core {

class LeaseTable {
 public:
  // kRejected: released to the dead-letter queue at once.
  enum class End : uint8_t { kDone, kExpired, kReleased, kRejected, kDeadLettered };
  // How an ended lease ended is remembered if it is among the last kEndedKept
  // leases handed out; an older one is refused as LEASE_EXPIRED rather than
  // ALREADY_DONE.
  static constexpr uint64_t kEndedKept = 65'536;

  // `incarnation` is the queue's: tags of another queue (or an earlier queue
  // of the same name) never match.
  explicit LeaseTable(uint64_t incarnation) : incarnation_(incarnation) {}

  // Leases `msg` until `expiry`; returns its tag.
  std::string Add(MessagePtr msg, TimePoint expiry);
  // The lease a tag names, or why there is none (`what` names the queue).
  Result<uint64_t> Find(std::string_view tag, const std::string& what) const;
  // Ends a live lease: its message is the caller's, `how` is remembered.
  MessagePtr Take(uint64_t lease, End how);
  void Extend(uint64_t lease, TimePoint expiry);
  // Live leases whose expiry is <= now, in expiry order.
  std::vector<uint64_t> Due(TimePoint now) const;
  // Every live lease's message, in no order; the table is empty after.
  std::vector<MessagePtr> TakeAll();
  // Remembers how a lease ended if Take was told otherwise (a released
  // message that was dead-lettered instead).
  void Remember(uint64_t lease, End how);

  size_t size() const { return leases_.size(); }
  TimePoint next_expiry() const { return expiry_.empty() ? kNever : expiry_.begin()->first; }
  // Walks every lease: for accounting checks and the destructor, not hot paths.
  uint64_t bytes() const;

 private:
  struct Lease {
    MessagePtr msg;
    TimePoint expiry;
  };

  // Among the last kEndedKept numbers handed out: its bit is still its own.
  bool InWindow(uint64_t lease) const { return next_lease_ - lease <= kEndedKept; }
  void SetDone(uint64_t lease, bool done);
  bool EndedDone(uint64_t lease) const;

  const uint64_t incarnation_;
  uint64_t next_lease_ = 1;
  std::unordered_map<uint64_t, Lease> leases_;
  std::set<std::pair<TimePoint, uint64_t>> expiry_;
  // Bit `lease % kEndedKept`: the lease numbered so ended by task_done. A
  // lease number clears its bit when handed out, so a bit always belongs to
  // the newest number of its slot.
  std::vector<uint64_t> done_;
};

}  // namespace basin::core
