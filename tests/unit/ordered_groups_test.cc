// Ordered message groups (MessageAttrs::group), with time by hand.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "broker/core/queue.h"
#include "unit/queue_fixture.h"

namespace basin::core {
namespace {

class OrderedGroupsTest : public QueueTest {
 protected:
  std::shared_ptr<Queue> MakeGrouped(const std::string& name, std::vector<Duration> backoff = {},
                                     uint64_t max_size = 0) {
    QueueConfig c;
    c.name = name;
    c.visibility_timeout = seconds(10);
    c.retry_backoff = std::move(backoff);
    c.max_size = max_size;
    return Make(c);
  }
  Result<std::vector<PutResult>> PutIn(Queue& q, const std::string& group,
                                       const std::string& payload, Duration ttl = {}) {
    MessageSpec spec{payload, nullptr, {}};
    spec.attrs.group = group;
    if (ttl > Duration::zero()) spec.attrs.expires_at = now_ + ttl;
    return PutBatchNow(q, {spec}, now_);
  }
};

TEST_F(OrderedGroupsTest, AGroupsNextMessageWaitsWhileOneIsOut) {
  auto q = MakeGrouped("groups");
  ASSERT_TRUE(PutIn(*q, "g1", "a1").ok());
  ASSERT_TRUE(PutIn(*q, "g1", "a2").ok());
  ASSERT_TRUE(PutIn(*q, "g2", "b1").ok());
  Put(*q, "plain");
  QueueStats s = q->Stats();
  EXPECT_EQ(s.size, 4u);
  EXPECT_EQ(s.groups, 2u);
  EXPECT_EQ(s.active_groups, 0u);
  Delivery a1 = MustGet(*q);
  EXPECT_EQ(a1.payload, "a1");
  EXPECT_EQ(MustGet(*q).payload, "b1");  // a2 waits for a1
  EXPECT_EQ(MustGet(*q).payload, "plain");
  EXPECT_EQ(Get(*q).code(), Errc::kQueueEmpty);
  EXPECT_EQ(q->Stats().active_groups, 2u);
  ASSERT_TRUE(q->TaskDone(a1.tag, now_).ok());
  EXPECT_EQ(MustGet(*q).payload, "a2");
  ExpectConserved();
}

TEST_F(OrderedGroupsTest, ReleaseExpiryAndBackoffKeepTheGroupInOrder) {
  auto q = MakeGrouped("in-order", {seconds(2)});
  ASSERT_TRUE(PutIn(*q, "g", "1").ok());
  ASSERT_TRUE(PutIn(*q, "g", "2").ok());
  Delivery first = MustGet(*q);
  ASSERT_TRUE(q->Release(first.tag, now_).ok());  // waits the backoff; 2 still waits
  EXPECT_EQ(Get(*q).code(), Errc::kQueueEmpty);
  EXPECT_EQ(q->Stats().active_groups, 1u);
  Advance(*q, seconds(2));
  Delivery again = MustGet(*q);
  EXPECT_EQ(again.payload, "1");
  Advance(*q, seconds(10));  // its lease expires: back (after the backoff), still first
  Advance(*q, seconds(2));
  Delivery third = MustGet(*q);
  EXPECT_EQ(third.payload, "1");
  EXPECT_EQ(third.delivery_count, 3u);
  ASSERT_TRUE(q->TaskDone(third.tag, now_).ok());
  EXPECT_EQ(MustGet(*q).payload, "2");
  ExpectConserved();
}

TEST_F(OrderedGroupsTest, ADeadLetterAdvancesTheGroupAndAnExpiredBacklogMessageLeaves) {
  Make("groups-dlq");  // the dead-letter queue
  QueueConfig c;
  c.name = "dl";
  c.dead_letter_queue = "groups-dlq";
  c.visibility_timeout = seconds(10);
  auto q = Make(c);
  ASSERT_TRUE(PutIn(*q, "g", "poison").ok());
  ASSERT_TRUE(PutIn(*q, "g", "short", seconds(1)).ok());
  ASSERT_TRUE(PutIn(*q, "g", "next").ok());
  Delivery poison = MustGet(*q);
  Advance(*q, seconds(1));  // "short" expires in the backlog
  EXPECT_EQ(q->Stats().total_expired, 1u);
  ASSERT_TRUE(q->Release(poison.tag, now_, std::nullopt, /*reject=*/true).ok());
  EXPECT_EQ(MustGet(*q).payload, "next");
  EXPECT_EQ(broker_.FindQueue("groups-dlq").value()->Stats().size, 2u);
  ExpectConserved();
}

TEST_F(OrderedGroupsTest, BacklogsTakeRoomAndADelayedGroupMessageIsRefused) {
  auto q = MakeGrouped("room", {}, 2);
  ASSERT_TRUE(PutIn(*q, "g", "1").ok());
  ASSERT_TRUE(PutIn(*q, "g", "2").ok());
  auto third = PutBatchNow(*q, {MessageSpec{"3", nullptr, {}}}, now_);
  EXPECT_EQ(third.error().code, Errc::kQueueFull);
  MessageSpec delayed{"later", nullptr, {}};
  delayed.attrs.group = "g";
  delayed.attrs.ready_at = now_ + seconds(1);
  auto r = PutBatchNow(*q, {delayed}, now_);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value()[0].error->code, Errc::kInvalidArgument);
  MessageSpec long_name{"x", nullptr, {}};
  const std::string name(kMaxGroupBytes + 1, 'n');
  long_name.attrs.group = name;
  r = PutBatchNow(*q, {long_name}, now_);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value()[0].error->code, Errc::kInvalidArgument);
  ExpectConserved();
}

TEST_F(OrderedGroupsTest, ManyGroupsCostOnlyTheirMessagesAndGetsStayCheap) {
  auto q = MakeGrouped("many");
  for (int i = 0; i < 10'000; ++i) ASSERT_TRUE(PutIn(*q, "g" + std::to_string(i), "m").ok());
  EXPECT_EQ(q->Stats().groups, 10'000u);
  for (int i = 0; i < 10'000; ++i) ASSERT_TRUE(q->TaskDone(MustGet(*q).tag, now_).ok());
  EXPECT_EQ(q->Stats().groups, 0u);
  ExpectConserved();
}

TEST_F(OrderedGroupsTest, DeleteDropsBacklogsAndTheirMemory) {
  auto q = MakeGrouped("deleted");
  ASSERT_TRUE(PutIn(*q, "g", "1").ok());
  ASSERT_TRUE(PutIn(*q, "g", "2").ok());
  EXPECT_EQ(q->Delete(), 2u);
  EXPECT_EQ(broker_.memory().used(), 0u);
}

}  // namespace
}  // namespace basin::core
