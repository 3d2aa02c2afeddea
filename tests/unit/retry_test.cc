// Releases with a delay, retry_backoff and reject, with time passed in by
// hand.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "broker/core/queue.h"
#include "unit/queue_fixture.h"

namespace basin::core {
namespace {

class RetryTest : public QueueTest {
 protected:
  std::shared_ptr<Queue> MakeWith(const std::string& name, std::vector<Duration> backoff,
                                  uint32_t max_deliveries = 0, const std::string& dlq = "") {
    QueueConfig c;
    c.name = name;
    c.visibility_timeout = seconds(10);
    c.retry_backoff = std::move(backoff);
    c.max_deliveries = max_deliveries;
    c.dead_letter_queue = dlq;
    return Make(c);
  }
  // Gets the one ready message and releases it without a delay of its own;
  // returns how long it waits.
  Duration GetAndRelease(Queue& q, std::optional<Duration> delay = std::nullopt) {
    Delivery d = MustGet(q);
    auto r = q.Release(d.tag, now_, delay);
    EXPECT_TRUE(r.ok());
    return r.ok() ? r.value().delay : Duration(-1);
  }
};

// A unary answer that never reached its client: the message goes back at
// once, as if it had never been handed out (no backoff, no delivery).
TEST_F(RetryTest, ATakenBackDeliveryIsNotADelivery) {
  auto q = MakeWith("taken-back", {seconds(30)}, 1);
  Put(*q, "job");
  Delivery d = MustGet(*q);
  q->TakeBack({d.tag}, now_);
  EXPECT_EQ(q->Stats().total_redelivered, 0u);
  EXPECT_EQ(q->Stats().total_delivered, 0u);
  Delivery again = MustGet(*q);  // ready at once, and not out of deliveries
  EXPECT_EQ(again.delivery_count, 1u);
  ExpectConserved();
}

TEST_F(RetryTest, BackoffFollowsTheDeliveryCountAndItsLastEntryRepeats) {
  auto q = MakeWith("backoff", {seconds(1), seconds(5)});
  Put(*q, "job");
  EXPECT_EQ(GetAndRelease(*q), seconds(1));
  EXPECT_EQ(q->Stats().delayed, 1u);
  EXPECT_EQ(Get(*q).code(), Errc::kQueueEmpty);
  Advance(*q, seconds(1) - Duration(1));
  EXPECT_EQ(Get(*q).code(), Errc::kQueueEmpty);
  Advance(*q, Duration(1));
  EXPECT_EQ(GetAndRelease(*q), seconds(5));
  Advance(*q, seconds(5));
  EXPECT_EQ(GetAndRelease(*q), seconds(5));  // the last entry repeats
  Advance(*q, seconds(5));
  Delivery d = MustGet(*q);
  EXPECT_EQ(d.delivery_count, 4u);
  EXPECT_EQ(q->Stats().total_redelivered, 3u);
  ExpectConserved();
}

TEST_F(RetryTest, AnExplicitDelayOverridesTheBackoffAndZeroIsAtOnce) {
  auto q = MakeWith("explicit", {seconds(30)});
  Put(*q, "job");
  EXPECT_EQ(GetAndRelease(*q, Duration::zero()), Duration::zero());
  EXPECT_EQ(GetAndRelease(*q, seconds(2)), seconds(2));
  Advance(*q, seconds(2));
  EXPECT_EQ(MustGet(*q).delivery_count, 3u);
  ExpectConserved();
}

TEST_F(RetryTest, AReleaseDelayBeyondThirtyDaysIsRefusedAndKeepsTheLease) {
  auto q = MakeWith("far", {});
  Put(*q, "job");
  Delivery d = MustGet(*q);
  auto r = q->Release(d.tag, now_, kMaxDelay + Duration(1));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(q->Stats().in_flight, 1u);
  EXPECT_TRUE(q->TaskDone(d.tag, now_).ok());
}

TEST_F(RetryTest, AnExpiredLeaseWaitsOutTheBackoff) {
  auto q = MakeWith("expiry", {seconds(3)});
  Put(*q, "job");
  MustGet(*q);
  Advance(*q, seconds(10));  // the visibility timeout
  EXPECT_EQ(q->Stats().in_flight, 0u);
  EXPECT_EQ(q->Stats().delayed, 1u);
  Advance(*q, seconds(3));
  EXPECT_EQ(MustGet(*q).delivery_count, 2u);
  ExpectConserved();
}

TEST_F(RetryTest, ARetryComesBackToTheHeadWhenDue) {
  auto q = MakeWith("head", {});
  Put(*q, "first");
  Put(*q, "second");
  EXPECT_EQ(GetAndRelease(*q, seconds(2)), seconds(2));
  Put(*q, "third");
  Advance(*q, seconds(2));
  EXPECT_EQ(MustGet(*q).payload, "first");
  EXPECT_EQ(MustGet(*q).payload, "second");
  EXPECT_EQ(MustGet(*q).payload, "third");
}

TEST_F(RetryTest, RetriesDueTogetherComeBackInPutOrder) {
  auto q = MakeWith("together", {seconds(1)});
  for (const char* p : {"a", "b", "c"}) Put(*q, p);
  std::vector<Delivery> out{MustGet(*q), MustGet(*q), MustGet(*q)};
  for (auto it = out.rbegin(); it != out.rend(); ++it) ASSERT_TRUE(q->Release(it->tag, now_).ok());
  Advance(*q, seconds(1));
  EXPECT_EQ(MustGet(*q).payload, "a");
  EXPECT_EQ(MustGet(*q).payload, "b");
  EXPECT_EQ(MustGet(*q).payload, "c");
}

TEST_F(RetryTest, ARejectDeadLettersAtOnceWithItsReason) {
  Make("poison");  // the dead-letter queue
  auto q = MakeWith("rejecting", {seconds(5)}, 0, "poison");
  Put(*q, "bad");
  Delivery d = MustGet(*q);
  auto r = q->Release(d.tag, now_, std::nullopt, /*reject=*/true);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.value().dead_lettered);
  EXPECT_EQ(q->Stats().unfinished, 0u);
  EXPECT_EQ(q->TaskDone(d.tag, now_).error().code, Errc::kLeaseExpired);
  auto dead = broker_.FindQueue("poison").value();
  Delivery moved = MustGet(*dead);
  EXPECT_EQ(moved.headers.at("basin-death-reason"), "rejected");
  EXPECT_EQ(moved.headers.at("basin-dead-letter-reason"), "rejected");
  EXPECT_EQ(moved.headers.at("basin-original-queue"), "rejecting");
  ExpectConserved();
}

TEST_F(RetryTest, MaxDeliveriesWinsOverTheBackoff) {
  Make("spent");  // the dead-letter queue
  auto q = MakeWith("limited", {seconds(5)}, 2, "spent");
  Put(*q, "job");
  EXPECT_EQ(GetAndRelease(*q), seconds(5));
  Advance(*q, seconds(5));
  Delivery d = MustGet(*q);
  auto r = q->Release(d.tag, now_);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.value().dead_lettered);
  EXPECT_EQ(q->Stats().delayed, 0u);
  Delivery moved = MustGet(*broker_.FindQueue("spent").value());
  EXPECT_EQ(moved.headers.at("basin-death-reason"), "max-deliveries");
  EXPECT_EQ(moved.headers.at("basin-dead-letter-reason"), "delivery_limit");
  ExpectConserved();
}

TEST_F(RetryTest, AConsumerReleasesWithADelayAndRejects) {
  Make("consumer-dlq");  // the dead-letter queue
  auto q = MakeWith("consumed", {}, 0, "consumer-dlq");
  Put(*q, "a");
  Put(*q, "b");
  auto c = q->AttachConsumer(
      10, {}, [] {}, now_);
  ASSERT_TRUE(c.ok());
  auto pulled = c.value().outbox->Next(10, 1 << 20);
  ASSERT_TRUE(pulled && pulled->deliveries.size() == 2);
  q->ConsumerRelease(c.value().id, {1}, 0, now_, seconds(4));
  q->ConsumerReject(c.value().id, {2}, now_);
  EXPECT_EQ(q->Stats().delayed, 1u);
  EXPECT_EQ(broker_.FindQueue("consumer-dlq").value()->Stats().size, 1u);
  Advance(*q, seconds(4));
  pulled = c.value().outbox->Next(10, 1 << 20);
  ASSERT_TRUE(pulled && pulled->deliveries.size() == 1);
  EXPECT_EQ(pulled->deliveries[0].message->payload(), "a");
  q->DetachConsumer(c.value().id, Error{Errc::kCancelled, "gone"}, now_);
  ExpectConserved();
}

TEST_F(RetryTest, ADetachedConsumersWrittenDeliveriesWaitTheBackoffItsUnwrittenOnesDoNot) {
  auto q = MakeWith("detach", {seconds(7)});
  Put(*q, "seen");
  Put(*q, "unseen");
  auto c = q->AttachConsumer(
      10, {}, [] {}, now_);
  ASSERT_TRUE(c.ok());
  auto pulled = c.value().outbox->Next(1, 1 << 20);  // only the first is written
  ASSERT_TRUE(pulled && pulled->deliveries.size() == 1);
  q->DetachConsumer(c.value().id, Error{Errc::kCancelled, "gone"}, now_);
  EXPECT_EQ(q->Stats().delayed, 1u);
  Delivery next = MustGet(*q);
  EXPECT_EQ(next.payload, "unseen");
  EXPECT_EQ(next.delivery_count, 1u);
  Advance(*q, seconds(7));
  EXPECT_EQ(MustGet(*q).payload, "seen");
  ExpectConserved();
}

}  // namespace
}  // namespace basin::core
