// The queue unit tests' fixture: a broker without a timer, time passed in
// by hand (now_), and helpers that capture what a blocking call answered.
#pragma once

#include <gtest/gtest.h>

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "broker/core/broker.h"
#include "broker/core/queue.h"

namespace basin::core {

using std::chrono::milliseconds;
using std::chrono::seconds;

// Captures what a blocking call's callback received.
template <typename T>
struct Outcome {
  std::optional<Result<T>> result;
  bool done() const { return result.has_value(); }
  bool ok() const { return done() && result->ok(); }
  Errc code() const { return result->error().code; }
};

class QueueTest : public ::testing::Test {
 protected:
  QueueTest() : broker_(Limits(), nullptr) {}

  static BrokerLimits Limits() {
    BrokerLimits l;
    l.max_message_bytes = 1024;
    l.max_waiters_per_queue = 8;
    l.max_lease = std::chrono::hours(1);
    return l;
  }

  std::shared_ptr<Queue> Make(QueueConfig c) {
    auto r = broker_.CreateQueue(std::move(c));
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.value().queue;
  }
  std::shared_ptr<Queue> Make(const std::string& name, uint64_t max_size = 0) {
    QueueConfig c;
    c.name = name;
    c.max_size = max_size;
    c.visibility_timeout = seconds(10);
    return Make(c);
  }

  // Blocking calls with an absolute deadline `wait` after now_.
  Outcome<uint64_t>& Put(Queue& q, const std::string& payload, Duration wait = {},
                         Headers headers = {}) {
    auto& out = puts_.emplace_back();
    WaitId id = 0;
    q.Put(payload, headers, now_, now_ + wait, &id, [&out](Result<uint64_t> r) { out.result = r; });
    last_wait_ = id;
    return out;
  }
  Outcome<Delivery>& Get(Queue& q, Duration wait = {}, Duration visibility = {}) {
    auto& out = gets_.emplace_back();
    WaitId id = 0;
    q.Get(visibility, now_, now_ + wait, &id, [&out](Result<Delivery> r) { out.result = r; });
    last_wait_ = id;
    return out;
  }
  Outcome<bool>& Join(Queue& q, Duration wait = {}) {
    auto& out = joins_.emplace_back();
    WaitId id = 0;
    q.Join(now_, now_ + wait, &id, [&out](Result<void> r) {
      out.result = r.ok() ? Result<bool>(true) : Result<bool>(r.error());
    });
    last_wait_ = id;
    return out;
  }
  Delivery MustGet(Queue& q) {
    auto& g = Get(q);
    EXPECT_TRUE(g.ok());
    return g.result->value();
  }
  void Advance(Queue& q, Duration d) {
    now_ += d;
    q.ExpireDue(now_);
  }
  // Nothing is created or lost: every message put is done, dead-lettered or
  // still in the queue, and the broker's memory budget holds exactly the
  // bytes the queues keep (walked, not taken from the counters it checks).
  void ExpectConserved() const {
    uint64_t kept = 0;
    for (const auto& q : broker_.ListQueues()) {
      const QueueStats s = q->Stats();
      EXPECT_EQ(s.total_put, s.total_done + s.total_dead_lettered + s.unfinished) << q->name();
      EXPECT_EQ(s.unfinished, s.size + s.in_flight + s.delayed) << q->name();
      kept += q->AccountedBytes();
    }
    EXPECT_EQ(broker_.memory().used(), kept);
  }

  Broker broker_;
  TimePoint now_ = TimePoint() + std::chrono::hours(1);
  WaitId last_wait_ = 0;
  // std::deque keeps references stable as outcomes are added.
  std::deque<Outcome<uint64_t>> puts_;
  std::deque<Outcome<Delivery>> gets_;
  std::deque<Outcome<bool>> joins_;
};

// Puts a batch: its answer, or kCancelled while it waits (the answer then
// lands in `out`).
inline Result<std::vector<PutResult>> PutBatchNow(
    Queue& q, const std::vector<MessageSpec>& batch, TimePoint now, Duration wait = {},
    std::optional<Result<std::vector<PutResult>>>* out = nullptr) {
  std::optional<Result<std::vector<PutResult>>> local;
  auto* sink = out != nullptr ? out : &local;
  WaitId id = 0;
  q.PutBatch(batch, now, now + wait, &id,
             [sink](Result<std::vector<PutResult>> r) { *sink = std::move(r); });
  if (!sink->has_value()) return Error{Errc::kCancelled, "still waiting"};
  return **sink;
}

}  // namespace basin::core
