// One live subscription: a bounded buffer between publishers and one stream.
//
// Publishers Offer() messages and never wait: when the buffer is full (by
// message count or bytes) the subscription's overflow policy decides — drop the
// oldest buffered messages (the next message handed out carries the count,
// `dropped_before`), or end the stream. Broker memory is not the buffer's
// business: the router charges each published message once to the subscriber
// share of --max-memory (the message carries the charge, and gives it back when
// the last buffer or stream drops it), and when the share is full it calls
// DropOldest() on the receivers to make room, or Lose() when there is none. The stream
// side pulls batches with Next(). When Next() finds nothing it marks the
// subscription idle, and the next accepted Offer() or End() calls `wake`
// (outside the lock) exactly once, so the stream knows to pull again. A new
// subscription starts busy: the stream writes its confirmation first and then
// pulls.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "broker/core/errc.h"
#include "broker/core/lock_rank.h"
#include "broker/core/memory_budget.h"
#include "broker/core/message.h"

namespace basin::core {

// A published message, shared by every subscription that buffers it.
struct PublishedMessage {
  std::string topic;
  std::string payload;
  Headers headers;
  uint64_t bytes = 0;  // topic + payload + headers: what it costs a buffer and the broker
  // Its bytes in the subscriber share, reserved once however many buffers
  // hold it; given back when the last reference goes.
  MemoryCharge charge;
};
using PublishedPtr = std::shared_ptr<const PublishedMessage>;

enum class OverflowPolicy : uint8_t { kDropOldest, kDisconnect };

struct SubscriptionOptions {
  std::vector<std::string> topics;
  std::vector<std::string> patterns;
  size_t max_messages = 10'000;
  uint64_t max_bytes = 16 << 20;
  OverflowPolicy policy = OverflowPolicy::kDropOldest;
  // Who holds it: the service passes the gRPC peer (one per connection), and
  // the router caps live subscriptions per owner.
  std::string owner{};
};

// One message as a subscriber receives it.
struct Delivered {
  PublishedPtr message;
  const std::string* pattern = nullptr;  // the pattern that matched, or null
  uint64_t dropped_before = 0;           // the gap notice: lost just before this one
};

// What one Next() hands the stream: a batch of messages, or the end.
struct Pulled {
  std::vector<Delivered> messages;
  std::optional<Error> end;  // set: the stream ends now, with this reason
};

class Subscription {
 public:
  // `footprint` is what the subscription itself (its topics and patterns)
  // holds of the subscriber share, given back when it is destroyed.
  Subscription(uint64_t id, SubscriptionOptions options, std::function<void()> wake,
               MemoryCharge footprint = {});
  ~Subscription();
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

  uint64_t id() const { return id_; }
  const SubscriptionOptions& options() const { return options_; }

  // What one Offer did.
  struct Offered {
    bool accepted = false;              // the message is buffered
    std::vector<PublishedPtr> dropped;  // messages dropped to make room (or the new one)
  };
  // `pattern` must point into options().patterns, or be null for a topic match.
  Offered Offer(PublishedPtr message, const std::string* pattern);
  // Gives up the oldest buffered message to free broker memory: null when the
  // buffer is empty, ended, or its policy is disconnect (which never loses a
  // message silently). The caller drops the result with no lock held.
  PublishedPtr DropOldest();
  // The most DropOldest could give up now (buffered bytes; a message shared
  // with other buffers frees less).
  uint64_t droppable_bytes() const;
  // `message` could not be buffered for lack of broker memory: drop_oldest
  // counts it in the gap notice, disconnect ends the stream.
  Offered Lose(PublishedPtr message);

  // Up to `max_messages` buffered messages (and about `max_bytes`, but at least
  // one), or the end; nullopt (now idle) when there is nothing yet. After an
  // end the subscription is finished and Next() must not be called again.
  std::optional<Pulled> Next(size_t max_messages, uint64_t max_bytes);

  // Ends the stream: buffered messages are discarded and the next Next()
  // returns kEnd with `why`. Later Offers are ignored. Idempotent.
  void End(Error why);

 private:
  void DropOldestLocked(std::vector<PublishedPtr>* dropped);
  bool FitsLocked(uint64_t bytes) const;
  // Ends the stream under the lock; the buffer moves to `dropped`, to be let
  // go (and its memory released) after the lock. True if the stream must be
  // woken.
  bool EndLocked(Error why, std::vector<PublishedPtr>* dropped);

  const uint64_t id_;
  const SubscriptionOptions options_;
  const std::function<void()> wake_;
  const MemoryCharge footprint_;

  mutable RankedMutex<LockRank::kSubscription> mu_;  // guards everything below; taken alone
  std::deque<Delivered> buffer_;
  uint64_t buffered_bytes_ = 0;
  uint64_t pending_gap_ = 0;  // dropped with nothing buffered after them yet
  std::optional<Error> end_;
  bool idle_ = false;
  bool finished_ = false;
};

}  // namespace basin::core
