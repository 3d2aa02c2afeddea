// HoleDeque (positions, holes, compaction) and ReadyList (priority levels).
#include "broker/core/ready_list.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "broker/core/hole_deque.h"

namespace basin::core {
namespace {

// A message with attributes (so it learns its slot) and the given priority.
MessagePtr Msg(const std::string& payload, uint8_t priority = 0) {
  MessageAttrs attrs;
  attrs.priority = priority;
  attrs.expires_at = TimePoint() + std::chrono::hours(1);  // any attribute gives a trailer
  return Message::Make(0, payload, {}, attrs);
}

std::vector<std::string> Drain(HoleDeque& q) {
  std::vector<std::string> out;
  while (MessagePtr m = q.PopFront()) out.emplace_back(m->payload());
  return out;
}

TEST(HoleDequeTest, TakesFromTheMiddleByPositionAcrossPushFront) {
  HoleDeque q;
  std::vector<const Message*> pushed;
  for (const char* p : {"b", "c", "d"}) {
    MessagePtr m = Msg(p);
    pushed.push_back(m.get());
    q.PushBack(std::move(m));
  }
  MessagePtr a = Msg("a");
  const Message* first = a.get();
  q.PushFront(std::move(a));
  MessagePtr c = q.Take(*pushed[1]);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->payload(), "c");
  EXPECT_EQ(q.Take(*c), nullptr);  // not in the deque any more: nothing
  EXPECT_EQ(q.size(), 3u);
  EXPECT_EQ(q.Take(*first)->payload(), "a");
  EXPECT_EQ(Drain(q), (std::vector<std::string>{"b", "d"}));
  EXPECT_EQ(q.capacity_used(), 0u);
}

TEST(HoleDequeTest, HolesAreCompactedAwayAndSlotsFollow) {
  HoleDeque q;
  std::vector<const Message*> all;
  for (int i = 0; i < 1000; ++i) {
    MessagePtr m = Msg(std::to_string(i));
    all.push_back(m.get());
    q.PushBack(std::move(m));
  }
  // Take every other one from the middle: holes never exceed live + margin.
  for (int i = 1; i < 999; i += 2) {
    ASSERT_NE(q.Take(*all[static_cast<size_t>(i)]), nullptr) << i;
    EXPECT_LE(q.capacity_used(), 2 * q.size() + 64);
  }
  // Slots rewritten by compaction still find their messages.
  EXPECT_EQ(q.Take(*all[500])->payload(), "500");
  EXPECT_EQ(q.PopFront()->payload(), "0");
  EXPECT_EQ(q.size(), 1000u - 499 - 2);
}

TEST(ReadyListTest, HigherPriorityFirstFifoWithinAndRequeuesToTheirLevelsHead) {
  ReadyList r(5);
  r.PushBack(Msg("low-1", 1));
  r.PushBack(Msg("high-1", 5));
  r.PushBack(Msg("capped", 9));  // above max_priority: level 5
  r.PushBack(Msg("low-2", 1));
  r.PushBack(Message::Make(0, "plain", {}));
  r.PushFront(Msg("high-requeued", 5));
  std::vector<std::string> order;
  while (MessagePtr m = r.PopBest()) order.emplace_back(m->payload());
  EXPECT_EQ(order, (std::vector<std::string>{"high-requeued", "high-1", "capped", "low-1", "low-2",
                                             "plain"}));
  EXPECT_EQ(r.size(), 0u);
  EXPECT_EQ(r.bytes(), 0u);
}

TEST(ReadyListTest, RemoveTakesAMessageFromItsLevel) {
  ReadyList r(3);
  MessagePtr keep = Msg("keep", 3);
  MessagePtr gone = Msg("gone", 3);
  const Message* g = gone.get();
  r.PushBack(std::move(keep));
  r.PushBack(std::move(gone));
  r.PushBack(Msg("low", 0));
  EXPECT_EQ(r.Remove(*g)->payload(), "gone");
  EXPECT_EQ(r.size(), 2u);
  EXPECT_EQ(r.PopBest()->payload(), "keep");
  EXPECT_EQ(r.Best()->payload(), "low");
}

}  // namespace
}  // namespace basin::core
