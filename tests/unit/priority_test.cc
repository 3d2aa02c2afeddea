// Priorities (max_priority, MessageAttrs::priority), with time by hand.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "broker/core/queue.h"
#include "unit/queue_fixture.h"

namespace basin::core {
namespace {

class PriorityTest : public QueueTest {
 protected:
  std::shared_ptr<Queue> MakePriority(const std::string& name, uint8_t max_priority,
                                      uint64_t max_size = 0) {
    QueueConfig c;
    c.name = name;
    c.visibility_timeout = seconds(10);
    c.max_priority = max_priority;
    c.max_size = max_size;
    return Make(c);
  }
  Outcome<uint64_t>& PutAt(Queue& q, const std::string& payload, uint8_t priority,
                           Duration wait = {}) {
    auto& out = puts_.emplace_back();
    MessageSpec spec{payload, nullptr, {}};
    spec.attrs.priority = priority;
    WaitId id = 0;
    q.PutBatch({spec}, now_, now_ + wait, &id, [&out](Result<std::vector<PutResult>> r) {
      out.result = r.ok() ? (r.value()[0].error ? Result<uint64_t>(*r.value()[0].error)
                                                : Result<uint64_t>(r.value()[0].message_id))
                          : Result<uint64_t>(r.error());
    });
    return out;
  }
};

TEST_F(PriorityTest, HigherFirstFifoWithinAndAboveTheMaxCountsAsTheMax) {
  auto q = MakePriority("prio", 5);
  PutAt(*q, "low-1", 1);
  PutAt(*q, "none", 0);
  PutAt(*q, "high-1", 5);
  PutAt(*q, "over", 9);
  PutAt(*q, "low-2", 1);
  std::vector<std::string> order;
  for (int i = 0; i < 5; ++i) order.push_back(MustGet(*q).payload);
  EXPECT_EQ(order, (std::vector<std::string>{"high-1", "over", "low-1", "low-2", "none"}));
  ExpectConserved();
}

TEST_F(PriorityTest, AReleaseGoesToTheHeadOfItsOwnLevel) {
  auto q = MakePriority("requeue", 3);
  PutAt(*q, "low", 1);
  PutAt(*q, "high-a", 3);
  PutAt(*q, "high-b", 3);
  Delivery a = MustGet(*q);
  ASSERT_EQ(a.payload, "high-a");
  ASSERT_TRUE(q->Release(a.tag, now_).ok());
  EXPECT_EQ(MustGet(*q).payload, "high-a");
  EXPECT_EQ(MustGet(*q).payload, "high-b");
  EXPECT_EQ(MustGet(*q).payload, "low");
}

TEST_F(PriorityTest, APlainQueueIgnoresPrioritiesAndTooHighIsRefused) {
  auto q = MakePriority("plain", 0);
  PutAt(*q, "first", 0);
  PutAt(*q, "second", 7);
  EXPECT_EQ(MustGet(*q).payload, "first");
  EXPECT_EQ(PutAt(*q, "bad", 11).code(), Errc::kInvalidArgument);
  ExpectConserved();
}

TEST_F(PriorityTest, BlockedPuttersAreAdmittedInArrivalOrderWhateverTheirPriority) {
  auto q = MakePriority("full", 9, 1);
  PutAt(*q, "in", 0);
  auto& low = PutAt(*q, "low", 1, seconds(60));
  auto& high = PutAt(*q, "high", 9, seconds(60));
  EXPECT_FALSE(low.done());
  MustGet(*q);  // frees one slot: the first putter to wait gets it
  EXPECT_TRUE(low.ok());
  EXPECT_FALSE(high.done());
  EXPECT_EQ(MustGet(*q).payload, "low");
  EXPECT_TRUE(high.ok());
}

TEST_F(PriorityTest, ADelayedMessageEntersTheTailOfItsLevel) {
  auto q = MakePriority("delayed-prio", 2);
  MessageSpec spec{"delayed-high", nullptr, {}};
  spec.attrs.priority = 2;
  spec.attrs.ready_at = now_ + seconds(1);
  ASSERT_TRUE(PutBatchNow(*q, {spec}, now_).ok());
  PutAt(*q, "high", 2);
  PutAt(*q, "low", 0);
  Advance(*q, seconds(1));
  EXPECT_EQ(MustGet(*q).payload, "high");
  EXPECT_EQ(MustGet(*q).payload, "delayed-high");
  EXPECT_EQ(MustGet(*q).payload, "low");
}

}  // namespace
}  // namespace basin::core
