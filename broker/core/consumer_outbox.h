// The stream side of a streaming consumer: what the queue has handed it and
// not yet written. The queue pushes under its own lock and calls wake() after
// releasing it when Push* returns true; the stream pulls with Next(). Same
// wake-up protocol as Subscription: Next() that finds nothing marks the outbox
// idle, and the next push asks for exactly one wake-up.
//
// Bounded: deliveries waiting here are also held by the consumer, so there
// are never more than its prefetch (a delivery the queue takes back before it
// was written — expired, released, acked unseen, the consumer ended — is
// dropped from here too, never written late); the notices (expired and
// unknown tags) keep at most kMaxNotices each, the excess dropped (they are
// advice).
//
// Memory: a delivery here is a hold on the queue's own message block
// (MessageRef), not a copy, and costs nothing beyond the message, which the
// queue charges while the consumer holds it. Once pulled, the stream's holds
// last until it has built its response (at most one response's deliveries),
// and may outlive the queue's charge if the message is acked meanwhile, as
// the response's own copy does.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <vector>

#include "broker/core/errc.h"
#include "broker/core/lock_rank.h"
#include "broker/core/message.h"

namespace basin::core {

struct StreamDelivery {
  uint64_t tag = 0;  // per-stream sequence, from 1
  MessageRef message;
  uint32_t delivery_count = 0;  // as of this hand-out (the message's own may change)
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

  explicit ConsumerOutbox(std::function<void()> wake) : wake_(std::move(wake)) {}

  // Each returns true when the caller must call Wake() once its locks are
  // released.
  bool Push(StreamDelivery d);
  bool PushExpired(uint64_t tag);
  bool PushUnknown(std::vector<uint64_t> tags);
  // Ends the stream; unwritten deliveries are dropped.
  bool End(Error why);
  void Wake() const { wake_(); }

  // The queue took these deliveries back (tags rising): those not yet
  // written are dropped. Returns the lowest tag that was still unwritten
  // (UINT64_MAX if none was): every tag below it had been written.
  uint64_t DropUnwritten(const std::vector<uint64_t>& tags);

  // Up to `max_deliveries` deliveries, stopping once they reach `max_bytes`
  // (always at least one), plus every notice, or the end; nullopt (now idle)
  // when there is nothing. After the end, do not call again.
  std::optional<ConsumerPull> Next(size_t max_deliveries, uint64_t max_bytes);

 private:
  bool BecomeBusyLocked();

  const std::function<void()> wake_;
  RankedMutex<LockRank::kConsumerOutbox> mu_;
  std::deque<StreamDelivery> deliveries_;  // tags rising
  std::vector<uint64_t> expired_;
  std::vector<uint64_t> unknown_;
  std::optional<Error> end_;
  bool idle_ = true;  // no writer is active until the first push
  bool finished_ = false;
};

}  // namespace basin::core
