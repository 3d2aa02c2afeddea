// The stream side of a streaming consumer: what the queue has handed it and
// not yet written. The queue pushes under its own lock and calls wake() after
// releasing it when Push* returns true; the stream pulls with Next(). Same
// wake-up protocol as Subscription: Next() that finds nothing marks the outbox
// idle, and the next push asks for exactly one wake-up.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <vector>

#include "broker/core/errc.h"
#include "broker/core/queue_types.h"

namespace basin::core {

struct StreamDelivery {
  uint64_t tag = 0;  // per-stream sequence, from 1
  Delivery delivery;
};

struct ConsumerPull {
  std::vector<StreamDelivery> deliveries;
  std::vector<uint64_t> expired;       // ack_timeout passed: requeued
  std::vector<uint64_t> unknown_tags;  // acks/releases naming nothing this stream holds
  std::optional<Error> end;            // set: the stream ends now
};

class ConsumerOutbox {
 public:
  explicit ConsumerOutbox(std::function<void()> wake) : wake_(std::move(wake)) {}

  // Each returns true when the caller must call Wake() once its locks are
  // released.
  bool Push(StreamDelivery d);
  bool PushExpired(uint64_t tag);
  bool PushUnknown(std::vector<uint64_t> tags);
  bool End(Error why);
  void Wake() const { wake_(); }

  // Up to `max_deliveries` deliveries plus every notice, or the end; nullopt
  // (now idle) when there is nothing. After the end, do not call again.
  std::optional<ConsumerPull> Next(size_t max_deliveries);

 private:
  bool BecomeBusyLocked();

  const std::function<void()> wake_;
  std::mutex mu_;
  std::deque<StreamDelivery> deliveries_;
  std::vector<uint64_t> expired_;
  std::vector<uint64_t> unknown_;
  std::optional<Error> end_;
  bool idle_ = true;  // no writer is active until the first push
  bool finished_ = false;
};

}  // namespace basin::core
