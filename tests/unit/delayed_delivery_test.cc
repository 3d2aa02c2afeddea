// Delayed delivery (MessageAttrs::ready_at), with time passed in by hand.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "broker/core/queue.h"
#include "unit/queue_fixture.h"

namespace basin::core {
namespace {

class DelayedDeliveryTest : public QueueTest {
 protected:
  // Puts one message that becomes ready `delay` from now_.
  Result<std::vector<PutResult>> PutDelayed(Queue& q, const std::string& payload, Duration delay,
                                            Duration wait = {}) {
    MessageSpec spec{payload, nullptr, {}};
    spec.attrs.ready_at = now_ + delay;
    return PutBatchNow(q, {spec}, now_, wait);
  }
  std::vector<std::string> Drain(Queue& q) {
    std::vector<std::string> out;
    for (;;) {
      auto& g = Get(q);
      if (!g.ok()) return out;
      out.push_back(g.result->value().payload);
      EXPECT_TRUE(q.TaskDone(g.result->value().tag, now_).ok());
    }
  }
};

TEST_F(DelayedDeliveryTest, ADelayedMessageIsUnfinishedButNotReady) {
  auto q = Make("later");
  ASSERT_TRUE(PutDelayed(*q, "soon", seconds(10)).ok());
  const QueueStats s = q->Stats();
  EXPECT_EQ(s.delayed, 1u);
  EXPECT_EQ(s.size, 0u);
  EXPECT_TRUE(s.empty);
  EXPECT_EQ(s.unfinished, 1u);
  EXPECT_EQ(Get(*q).code(), Errc::kQueueEmpty);
  EXPECT_EQ(Join(*q).code(), Errc::kJoinTimeout);
  ExpectConserved();
}

TEST_F(DelayedDeliveryTest, ItBecomesReadyExactlyAtItsTime) {
  auto q = Make("exact");
  ASSERT_TRUE(PutDelayed(*q, "m", seconds(10)).ok());
  auto& waiting = Get(*q, seconds(60));
  Advance(*q, seconds(10) - Duration(1));
  EXPECT_FALSE(waiting.done());
  EXPECT_EQ(q->Stats().delayed, 1u);
  Advance(*q, Duration(1));
  ASSERT_TRUE(waiting.ok());  // the blocked getter is served by the timer
  EXPECT_EQ(waiting.result->value().payload, "m");
  EXPECT_EQ(q->Stats().delayed, 0u);
  ExpectConserved();
}

TEST_F(DelayedDeliveryTest, MessagesDueTogetherComeInPutOrderAfterWhatWasReady) {
  auto q = Make("order");
  ASSERT_TRUE(PutDelayed(*q, "a", seconds(5)).ok());
  ASSERT_TRUE(PutDelayed(*q, "b", seconds(3)).ok());
  ASSERT_TRUE(PutDelayed(*q, "c", seconds(5)).ok());
  Put(*q, "d");
  Advance(*q, seconds(5));
  EXPECT_EQ(Drain(*q), (std::vector<std::string>{"d", "b", "a", "c"}));
  ExpectConserved();
}

TEST_F(DelayedDeliveryTest, APastTimeIsReadyAtOnceAndCarriesNothing) {
  auto q = Make("past");
  MessageSpec spec{"m", nullptr, {}};
  spec.attrs.ready_at = now_ - seconds(1);
  ASSERT_TRUE(PutBatchNow(*q, {spec}, now_).ok());
  EXPECT_EQ(q->Stats().size, 1u);
  EXPECT_EQ(q->Stats().bytes, 1u);  // no attributes kept: a plain message
  ExpectConserved();
}

TEST_F(DelayedDeliveryTest, DelayedMessagesTakeMemoryButNoRoomUntilReady) {
  auto q = Make("bounded", 1);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(PutDelayed(*q, "later", seconds(1)).ok());
  EXPECT_TRUE(Put(*q, "now").ok());
  EXPECT_EQ(Put(*q, "full").code(), Errc::kQueueFull);
  // Each delayed one is charged its bytes and the attributes' share.
  EXPECT_EQ(q->AccountedBytes(), 3 * (5 + Message::kAttrsOverhead) + 3);
  ExpectConserved();
  // Ready, they enter over the bound (they were accepted); putters wait.
  Advance(*q, seconds(1));
  EXPECT_EQ(q->Stats().size, 4u);
  auto& blocked = Put(*q, "waits", seconds(60));
  EXPECT_FALSE(blocked.done());
  EXPECT_EQ(Drain(*q), (std::vector<std::string>{"now", "later", "later", "later", "waits"}));
  EXPECT_TRUE(blocked.ok());
  ExpectConserved();
}

TEST_F(DelayedDeliveryTest, ABatchThatFitsOnlyBecauseOfItsDelayedMessagesIsTaken) {
  auto q = Make("batch-bound", 2);
  std::vector<MessageSpec> batch(5, MessageSpec{"x", nullptr, {}});
  for (size_t i = 0; i < 3; ++i) batch[i].attrs.ready_at = now_ + seconds(1);
  auto r = PutBatchNow(*q, batch, now_);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(q->Stats().size, 2u);
  EXPECT_EQ(q->Stats().delayed, 3u);
  ExpectConserved();
}

// A batch whose delayed messages alone are more than the queues' memory can
// never be admitted: refused, rather than left to block every later put.
TEST(DelayedDeliveryMemoryTest, ABatchLargerThanMemoryIsRefusedEvenIfDelayed) {
  BrokerLimits limits;
  limits.max_message_bytes = 1 << 20;
  limits.max_memory = 4 << 20;
  Broker broker(limits, nullptr);
  QueueConfig c;
  c.name = "big";
  auto q = broker.CreateQueue(c).value().queue;
  const std::string payload(512 << 10, 'x');
  const TimePoint now = TimePoint() + std::chrono::hours(1);
  std::vector<MessageSpec> batch(16, MessageSpec{payload, nullptr, {}});
  for (auto& spec : batch) spec.attrs.ready_at = now + seconds(60);
  auto r = PutBatchNow(*q, batch, now, seconds(10));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
}

TEST_F(DelayedDeliveryTest, MoreThanThirtyDaysAheadIsRefusedPerMessage) {
  auto q = Make("horizon");
  std::vector<MessageSpec> batch(2, MessageSpec{"x", nullptr, {}});
  batch[0].attrs.ready_at = now_ + kMaxDelay;
  batch[1].attrs.ready_at = now_ + kMaxDelay + Duration(1);
  auto r = PutBatchNow(*q, batch, now_);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r.value()[0].error.has_value());
  ASSERT_TRUE(r.value()[1].error.has_value());
  EXPECT_EQ(r.value()[1].error->code, Errc::kInvalidArgument);
  EXPECT_EQ(q->Stats().delayed, 1u);
  ExpectConserved();
}

TEST_F(DelayedDeliveryTest, JoinAndCloseWaitForDelayedMessages) {
  auto q = Make("closing");
  ASSERT_TRUE(PutDelayed(*q, "last", seconds(5)).ok());
  auto& join = Join(*q, seconds(60));
  auto& get = Get(*q, seconds(60));
  EXPECT_FALSE(q->Close(now_));
  EXPECT_FALSE(get.done());  // not drained: a message is still to come
  Advance(*q, seconds(5));
  ASSERT_TRUE(get.ok());
  EXPECT_FALSE(join.done());
  ASSERT_TRUE(q->TaskDone(get.result->value().tag, now_).ok());
  EXPECT_TRUE(join.ok());
  EXPECT_EQ(Get(*q, seconds(1)).code(), Errc::kQueueDrained);
  ExpectConserved();
}

TEST_F(DelayedDeliveryTest, DeleteDropsDelayedMessagesAndTheirMemory) {
  auto q = Make("gone");
  ASSERT_TRUE(PutDelayed(*q, "a", seconds(5)).ok());
  Put(*q, "b");
  EXPECT_EQ(q->Delete(), 2u);
  EXPECT_EQ(broker_.memory().used(), 0u);
}

TEST_F(DelayedDeliveryTest, OnePassMakesAtMostABatchReadyAndAsksForTheNextAtOnce) {
  auto q = Make("many");
  std::vector<MessageSpec> batch(kDueBatch, MessageSpec{"x", nullptr, {}});
  for (auto& spec : batch) spec.attrs.ready_at = now_ + seconds(1);
  ASSERT_TRUE(PutBatchNow(*q, batch, now_).ok());
  ASSERT_TRUE(PutBatchNow(*q, {batch.front()}, now_).ok());
  now_ += seconds(1);
  EXPECT_EQ(q->ExpireDue(now_), now_);  // more are due: call again now
  EXPECT_EQ(q->Stats().size, kDueBatch);
  EXPECT_EQ(q->ExpireDue(now_), kNever);
  EXPECT_EQ(q->Stats().size, kDueBatch + 1);
  ExpectConserved();
}

}  // namespace
}  // namespace basin::core
