// Message TTL (expires_at, the queue's message_ttl), with time by hand.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "broker/core/queue.h"
#include "unit/queue_fixture.h"

namespace basin::core {
namespace {

class MessageTtlTest : public QueueTest {
 protected:
  std::shared_ptr<Queue> MakeTtl(const std::string& name, Duration ttl = {},
                                 const std::string& dlq = "", std::vector<Duration> backoff = {}) {
    QueueConfig c;
    c.name = name;
    c.visibility_timeout = seconds(10);
    c.message_ttl = ttl;
    c.dead_letter_queue = dlq;
    c.retry_backoff = std::move(backoff);
    return Make(c);
  }
  // Puts one message that expires `ttl` from now (and is ready `delay` from now).
  Result<std::vector<PutResult>> PutTtl(Queue& q, const std::string& payload, Duration ttl,
                                        Duration delay = {}) {
    MessageSpec spec{payload, nullptr, {}};
    spec.attrs.expires_at = now_ + ttl;
    if (delay > Duration::zero()) spec.attrs.ready_at = now_ + delay;
    return PutBatchNow(q, {spec}, now_);
  }
};

TEST_F(MessageTtlTest, AnExpiredReadyMessageIsDeadLetteredWithItsReason) {
  auto dlq = Make("ttl-dlq");
  auto q = MakeTtl("ttl", {}, "ttl-dlq");
  ASSERT_TRUE(PutTtl(*q, "short", seconds(5)).ok());
  Put(*q, "forever");
  Advance(*q, seconds(5));
  const QueueStats s = q->Stats();
  EXPECT_EQ(s.size, 1u);
  EXPECT_EQ(s.total_expired, 1u);
  EXPECT_EQ(s.total_dead_lettered, 1u);
  Delivery dead = MustGet(*dlq);
  EXPECT_EQ(dead.payload, "short");
  EXPECT_EQ(dead.headers.at("basin-death-reason"), "expired");
  EXPECT_EQ(MustGet(*q).payload, "forever");
  ExpectConserved();
}

TEST_F(MessageTtlTest, AGetNeverHandsOutAnExpiredMessageBeforeTheTimerRuns) {
  auto q = MakeTtl("lazy");
  ASSERT_TRUE(PutTtl(*q, "stale", seconds(1)).ok());
  Put(*q, "fresh");
  now_ += seconds(1);  // no ExpireDue: the timer has not run yet
  EXPECT_EQ(MustGet(*q).payload, "fresh");
  EXPECT_EQ(q->Stats().total_expired, 1u);
  ExpectConserved();
}

TEST_F(MessageTtlTest, AnExpiredDelayedMessageIsNeverReadyAndWithoutADlqIsDropped) {
  auto q = MakeTtl("delayed-ttl");
  ASSERT_TRUE(PutTtl(*q, "never", seconds(5), seconds(2)).ok());
  Advance(*q, seconds(2));
  EXPECT_EQ(q->Stats().size, 1u);
  ASSERT_TRUE(PutTtl(*q, "later", seconds(5), seconds(4)).ok());  // ready at 6 s, expires at 7 s
  Advance(*q, seconds(3));  // 5 s: the first expired while ready
  EXPECT_EQ(q->Stats().total_expired, 1u);
  EXPECT_EQ(q->Stats().delayed, 1u);
  Advance(*q, seconds(2));  // 7 s: the second became ready at 6 s and expired at 7 s
  EXPECT_EQ(q->Stats().total_expired, 2u);
  EXPECT_EQ(q->Stats().unfinished, 0u);
  ExpectConserved();
}

TEST_F(MessageTtlTest, ALeasedMessageExpiresWhenItsLeaseEndsAndTaskDoneStillWorks) {
  auto q = MakeTtl("leased");
  ASSERT_TRUE(PutTtl(*q, "a", seconds(5)).ok());
  ASSERT_TRUE(PutTtl(*q, "b", seconds(5)).ok());
  Delivery a = MustGet(*q);
  Delivery b = MustGet(*q);
  Advance(*q, seconds(6));  // both past their TTL while out
  EXPECT_EQ(q->Stats().in_flight, 2u);
  EXPECT_TRUE(q->TaskDone(a.tag, now_).ok());
  auto released = q->Release(b.tag, now_);
  ASSERT_TRUE(released.ok());
  EXPECT_TRUE(released.value().dead_lettered);
  EXPECT_EQ(q->Stats().total_expired, 1u);
  ExpectConserved();
}

TEST_F(MessageTtlTest, ARetryThatWouldOutliveTheTtlExpiresAtOnce) {
  auto q = MakeTtl("retry-ttl", {}, "", {seconds(10)});
  ASSERT_TRUE(PutTtl(*q, "x", seconds(5)).ok());
  Delivery d = MustGet(*q);
  auto r = q->Release(d.tag, now_);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.value().dead_lettered);
  EXPECT_EQ(q->Stats().total_expired, 1u);
  ExpectConserved();
}

TEST_F(MessageTtlTest, TheQueueDefaultAppliesToPutsRoutedCopiesAndDeadLetters) {
  auto dlq = MakeTtl("default-dlq", seconds(30));
  auto q = MakeTtl("default", seconds(10), "default-dlq");
  Put(*q, "put");
  ASSERT_TRUE(q->Offer("routed", {}, now_).ok());
  ASSERT_TRUE(PutTtl(*q, "own", seconds(2)).ok());  // its own TTL wins
  Advance(*q, seconds(2));
  EXPECT_EQ(q->Stats().size, 2u);
  EXPECT_EQ(dlq->Stats().size, 1u);
  Advance(*q, seconds(8));
  EXPECT_EQ(q->Stats().size, 0u);
  EXPECT_EQ(dlq->Stats().size, 3u);
  Advance(*dlq, seconds(22));  // the first dead letter arrived at 2 s: 30 s later
  EXPECT_EQ(dlq->Stats().size, 2u);
  Advance(*dlq, seconds(8));
  EXPECT_EQ(dlq->Stats().size, 0u);
  ExpectConserved();
}

TEST_F(MessageTtlTest, BadTtlsAreRefusedPerMessage) {
  auto q = MakeTtl("bad-ttl");
  std::vector<MessageSpec> batch(3, MessageSpec{"x", nullptr, {}});
  batch[0].attrs.expires_at = now_ + kMaxTtl + Duration(1);
  batch[1].attrs.expires_at = now_ + seconds(1);
  batch[1].attrs.ready_at = now_ + seconds(1);  // expires as it becomes ready
  batch[2].attrs.expires_at = now_ + seconds(1);
  auto r = PutBatchNow(*q, batch, now_);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value()[0].error->code, Errc::kInvalidArgument);
  EXPECT_EQ(r.value()[1].error->code, Errc::kInvalidArgument);
  EXPECT_FALSE(r.value()[2].error.has_value());
  ExpectConserved();
}

TEST_F(MessageTtlTest, ManyExpiriesFromTheMiddleKeepTheQueueInOrder) {
  auto q = MakeTtl("middle");
  for (int i = 0; i < 300; ++i) {
    if (i % 3 == 0) {
      Put(*q, "keep-" + std::to_string(i));
    } else {
      ASSERT_TRUE(PutTtl(*q, "drop", seconds(1 + i % 2)).ok());
    }
  }
  Advance(*q, seconds(2));
  EXPECT_EQ(q->Stats().size, 100u);
  for (int i = 0; i < 300; i += 3) EXPECT_EQ(MustGet(*q).payload, "keep-" + std::to_string(i));
  ExpectConserved();
}

}  // namespace
}  // namespace basin::core
