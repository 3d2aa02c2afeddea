// The stream side of a streaming consumer: what the queue has handed it and
// not yet written. The queue pushes under its own lock and calls wake() after
// releasing it when Push* returns true; the stream pulls with Next(). Same
// wake-up protocol as Subscription: Next() that finds nothing marks the outbox
// idle, and the next push asks for exactly one wake-up.
//
// Bounded: deliveries waiting here are also held by the consumer, so there
// are never more than its prefetch (a delivery the queue takes back before it
// was written — expired, released, acked unseen, the consumer ended — is
// dropped from here too, never written late); their copies are charged to
// the broker's memory budget until written; the notices (expired and unknown
// tags) keep at most kMaxNotices each, the excess dropped (they are advice).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <vector>

#include "broker/core/errc.h"
#include "broker/core/lock_rank.h"
#include "broker/core/memory_budget.h"
#include "broker/core/queue_types.h"
#include "broker/core/time.h"

namespace basin::core {

struct StreamDelivery {
  uint64_t tag = 0;  // per-stream sequence, from 1
  Delivery delivery;
  uint64_t bytes = 0;  // charged to the memory budget while it waits here
};

struct ConsumerPull {
  std::vector<StreamDelivery> deliveries;
  std::vector<uint64_t> expired;       // ack_timeout passed: requeued
  std::vector<uint64_t> unknown_tags;  // acks/releases naming nothing this stream holds
  std::optional<Error> end;            // set: the stream ends now
};

class ConsumerOutbox {
 public:
  static constexpr size_t kMaxNotices = 65'536;

  // `memory` may be null (nothing charged).
  ConsumerOutbox(std::function<void()> wake, MemoryBudget* memory)
      : wake_(std::move(wake)), memory_(memory) {}

  // Each returns true when the caller must call Wake() once its locks are
  // released.
  bool Push(StreamDelivery d);
  bool PushExpired(uint64_t tag);
  bool PushUnknown(std::vector<uint64_t> tags);
  // Ends the stream; unwritten deliveries are dropped and their bytes added
  // to *freed, for the caller to release once its locks are released.
  bool End(Error why, uint64_t* freed);
  void Wake() const { wake_(); }

  // The queue took these deliveries back (tags rising): those not yet
  // written are dropped. Returns the lowest tag that was still unwritten
  // (UINT64_MAX if none was): every tag below it had been written. Their
  // bytes are added to *freed.
  uint64_t DropUnwritten(const std::vector<uint64_t>& tags, uint64_t* freed);

  // Up to `max_deliveries` deliveries plus every notice, or the end; nullopt
  // (now idle) when there is nothing. After the end, do not call again.
  // Releases the pulled deliveries' bytes: call with no lock held.
  std::optional<ConsumerPull> Next(size_t max_deliveries, TimePoint now);

  // Bytes of the deliveries waiting here (what is charged for them).
  uint64_t unwritten_bytes();

 private:
  bool BecomeBusyLocked();

  const std::function<void()> wake_;
  MemoryBudget* const memory_;
  RankedMutex<LockRank::kConsumerOutbox> mu_;
  std::deque<StreamDelivery> deliveries_;  // tags rising
  std::vector<uint64_t> expired_;
  std::vector<uint64_t> unknown_;
  std::optional<Error> end_;
  bool idle_ = true;  // no writer is active until the first push
  bool finished_ = false;
};

}  // namespace basin::core
