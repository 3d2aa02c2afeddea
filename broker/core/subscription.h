// One live subscription: a bounded buffer between publishers and one stream.
//
// Publishers Offer() messages and never wait: when the buffer is full (by
// message count, bytes, or the broker's --max-memory) the subscription's
// overflow policy decides — drop the oldest buffered messages and report a gap,
// or end the stream. The stream side pulls with Next(). When Next() finds
// nothing it marks the subscription idle, and the next Offer() or End() calls
// `wake` (outside the lock) exactly once, so the stream knows to pull again.
// A new subscription starts busy: the stream writes its confirmation first and
// then pulls.
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
#include "broker/core/memory_budget.h"
#include "broker/core/message.h"

namespace basin::core {

// A published message, shared by every subscription that buffers it.
struct PublishedMessage {
  std::string topic;
  std::string payload;
  Headers headers;
  uint64_t bytes = 0;  // what a buffer is charged for it: topic + payload + headers
};
using PublishedPtr = std::shared_ptr<const PublishedMessage>;

enum class OverflowPolicy : uint8_t { kDropOldest, kDisconnect };

struct SubscriptionOptions {
  std::vector<std::string> topics;
  std::vector<std::string> patterns;
  size_t max_messages = 10'000;
  uint64_t max_bytes = 16 << 20;
  OverflowPolicy policy = OverflowPolicy::kDropOldest;
};

struct SubscriptionEvent {
  enum class Kind : uint8_t { kMessage, kGap, kEnd };
  Kind kind = Kind::kMessage;
  PublishedPtr message;                  // kMessage
  const std::string* pattern = nullptr;  // kMessage: the pattern that matched, or null
  uint64_t dropped = 0;                  // kGap
  Error end{Errc::kCancelled, {}};       // kEnd: why the stream ends
};

class Subscription {
 public:
  Subscription(uint64_t id, SubscriptionOptions options, MemoryBudget* memory,
               std::function<void()> wake);
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

  // The next event, or nullopt (now idle) when there is none yet. After a kEnd
  // event the subscription is finished and Next() must not be called again.
  std::optional<SubscriptionEvent> Next();

  // Ends the stream: buffered messages are discarded and the next Next()
  // returns kEnd with `why`. Later Offers are ignored. Idempotent.
  void End(Error why);

 private:
  struct Buffered {
    PublishedPtr message;
    const std::string* pattern;
  };
  void DropOldestLocked(std::vector<PublishedPtr>* dropped);
  bool FitsLocked(uint64_t bytes) const;

  const uint64_t id_;
  const SubscriptionOptions options_;
  MemoryBudget* const memory_;
  const std::function<void()> wake_;

  std::mutex mu_;
  std::deque<Buffered> buffer_;
  uint64_t buffered_bytes_ = 0;
  uint64_t gap_ = 0;  // dropped since the last event handed out
  std::optional<Error> end_;
  bool idle_ = false;
  bool finished_ = false;
};

}  // namespace basin::core
