// Pub/sub in the Basin SDK: publish to topics, subscribe to topics and
// patterns (`*` one word, `#` zero or more words), bind topics to queues.
//
//   auto sub = client.subscribe({"spub", "cctv1"}, {.patterns = {"news.*"}});
//   client.publish("spub", "hello");     // the subscription is live already
//   for (const basin::TopicMessage& m : sub) { ... }   // until sub.cancel()
//
// A subscription reads one gRPC stream. Messages published while nobody
// listens are not kept: bind a queue to the topic for that.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "basin/errors.h"

namespace basin {

namespace detail {
class Connection;
class SubscriptionStream;
}  // namespace detail

struct TopicMessage {
  std::string topic;
  std::string pattern;  // the pattern that matched; empty when a topic did
  std::string payload;
  std::map<std::string, std::string> headers;
  // Messages this subscriber lost just before this one (slow subscriber,
  // drop_oldest policy).
  uint64_t dropped_before = 0;
};

struct SubscribeOptions {
  std::vector<std::string> patterns{};
  uint64_t buffer_messages = 0;  // 0 = the broker's default (10,000)
  uint64_t buffer_bytes = 0;     // 0 = the broker's default (16 MiB)
  // What the broker does when this subscriber falls a buffer behind.
  enum class Overflow { kDropOldest, kDisconnect } overflow = Overflow::kDropOldest;
};

struct PublishResult {
  uint64_t receivers = 0;  // live subscriptions that got it
  uint64_t queues = 0;     // bound queues that got a copy
  std::vector<std::string> undelivered_queues{};
};

struct TopicStats {
  std::string name{};
  uint64_t subscribers = 0;
  uint64_t published = 0;
  uint64_t delivered = 0;
  uint64_t dropped = 0;
  uint64_t routed = 0;
};

struct Binding {
  std::string topic_pattern{};
  std::string queue{};
};

struct TopicsInfo {
  std::vector<TopicStats> topics{};
  std::vector<Binding> bindings{};
};

// A live subscription. Move-only; destroying it cancels it.
class Subscription {
 public:
  Subscription(Subscription&&) noexcept;
  Subscription& operator=(Subscription&&) noexcept;
  ~Subscription();

  // Blocks for the next message. nullopt once the subscription was cancelled;
  // throws SlowSubscriber (disconnect policy), Unavailable (broker stopping or
  // gone) or another Error when the broker ends the stream.
  std::optional<TopicMessage> next();
  // Ends the subscription; a next() blocked in another thread returns nullopt.
  void cancel();
  // Messages lost so far to the overflow policy.
  uint64_t dropped() const;

  class iterator {
   public:
    using value_type = TopicMessage;
    using difference_type = std::ptrdiff_t;
    const TopicMessage& operator*() const { return *current_; }
    const TopicMessage* operator->() const { return &*current_; }
    iterator& operator++() {
      current_ = sub_->next();
      return *this;
    }
    bool operator==(const iterator& o) const { return !current_ && !o.current_; }
    bool operator!=(const iterator& o) const { return !(*this == o); }

   private:
    friend class Subscription;
    explicit iterator(Subscription* sub) : sub_(sub) {
      if (sub_) current_ = sub_->next();
    }
    Subscription* sub_;
    std::optional<TopicMessage> current_;
  };
  iterator begin() { return iterator(this); }
  iterator end() { return iterator(nullptr); }

 private:
  friend class Client;
  explicit Subscription(std::unique_ptr<detail::SubscriptionStream> stream);
  std::unique_ptr<detail::SubscriptionStream> stream_;
};

}  // namespace basin
