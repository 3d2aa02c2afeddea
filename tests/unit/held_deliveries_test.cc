#include "broker/core/held_deliveries.h"

#include <gtest/gtest.h>

namespace basin::core {
namespace {

const TimePoint t0{};

MessagePtr Msg(uint64_t id) {
  MessagePtr m = Message::Make(id, "payload", {});
  return m;
}

std::vector<uint64_t> Tags(const std::vector<HeldDeliveries::Taken>& taken) {
  std::vector<uint64_t> out;
  for (const auto& t : taken) out.push_back(t.tag);
  return out;
}

TEST(HeldDeliveriesTest, TagsRiseFromOneAndTakeFindsEachOnce) {
  HeldDeliveries h;
  EXPECT_EQ(h.Add(Msg(10), kNever), 1u);
  EXPECT_EQ(h.Add(Msg(11), kNever), 2u);
  EXPECT_EQ(h.Add(Msg(12), kNever), 3u);
  EXPECT_EQ(h.size(), 3u);
  MessagePtr m = h.Take(2);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->id(), 11u);
  EXPECT_EQ(h.Take(2), nullptr);  // already taken
  EXPECT_EQ(h.Take(0), nullptr);
  EXPECT_EQ(h.Take(4), nullptr);  // never handed out
  EXPECT_EQ(h.size(), 2u);
  EXPECT_EQ(h.bytes(), 2 * m->bytes());
}

TEST(HeldDeliveriesTest, TakeUpToSkipsHolesAndKeepsTagOrder) {
  HeldDeliveries h;
  for (uint64_t i = 1; i <= 6; ++i) h.Add(Msg(i), kNever);
  h.Take(3);
  EXPECT_EQ(Tags(h.TakeUpTo(5)), (std::vector<uint64_t>{1, 2, 4, 5}));
  EXPECT_EQ(h.size(), 1u);
  EXPECT_EQ(Tags(h.TakeUpTo(UINT64_MAX)), (std::vector<uint64_t>{6}));
  EXPECT_TRUE(h.empty());
  EXPECT_EQ(h.Add(Msg(7), kNever), 7u);  // tags keep rising after emptying
}

TEST(HeldDeliveriesTest, ExpiryFollowsTheOldestHeld) {
  HeldDeliveries h;
  using std::chrono::seconds;
  h.Add(Msg(1), t0 + seconds(1));
  h.Add(Msg(2), t0 + seconds(2));
  h.Add(Msg(3), t0 + seconds(3));
  EXPECT_EQ(h.next_expiry(), t0 + seconds(1));
  h.Take(1);
  EXPECT_EQ(h.next_expiry(), t0 + seconds(2));
  h.Add(Msg(4), t0 + seconds(4));
  h.Take(3);
  EXPECT_EQ(Tags(h.TakeExpired(t0 + seconds(3))), (std::vector<uint64_t>{2}));
  EXPECT_EQ(h.next_expiry(), t0 + seconds(4));
  EXPECT_TRUE(h.TakeExpired(t0 + seconds(3)).empty());
  h.Take(4);
  EXPECT_EQ(h.next_expiry(), kNever);
}

TEST(HeldDeliveriesTest, AnExtendedDeliveryExpiresAfterLaterOnes) {
  HeldDeliveries h;
  using std::chrono::seconds;
  h.Add(Msg(1), t0 + seconds(1));
  h.Add(Msg(2), t0 + seconds(2));
  h.Add(Msg(3), t0 + seconds(3));
  EXPECT_TRUE(h.Extend(1, t0 + seconds(10)));
  EXPECT_FALSE(h.Extend(9, t0 + seconds(10)));  // not held
  EXPECT_EQ(h.next_expiry(), t0 + seconds(2));
  EXPECT_EQ(Tags(h.TakeExpired(t0 + seconds(3))), (std::vector<uint64_t>{2, 3}));
  EXPECT_EQ(h.next_expiry(), t0 + seconds(10));
  EXPECT_EQ(Tags(h.TakeExpired(t0 + seconds(10))), (std::vector<uint64_t>{1}));
  // Empty again: later deliveries are back in order.
  h.Add(Msg(4), t0 + seconds(11));
  h.Add(Msg(5), t0 + seconds(12));
  EXPECT_EQ(Tags(h.TakeExpired(t0 + seconds(11))), (std::vector<uint64_t>{4}));
  // A range: 5 and 6 move past 7.
  h.Add(Msg(6), t0 + seconds(13));
  h.Add(Msg(7), t0 + seconds(14));
  h.ExtendUpTo(6, t0 + seconds(20));
  EXPECT_EQ(h.next_expiry(), t0 + seconds(14));
  EXPECT_EQ(Tags(h.TakeExpired(t0 + seconds(19))), (std::vector<uint64_t>{7}));
  EXPECT_EQ(Tags(h.TakeExpired(t0 + seconds(20))), (std::vector<uint64_t>{5, 6}));
}

TEST(HeldDeliveriesTest, OneOldDeliveryDoesNotPinEveryLaterOne) {
  // The first delivery is never acked while a million later ones are: what
  // stays is the old one, and the ones still held, not a million holes.
  HeldDeliveries h;
  h.Add(Msg(0), kNever);
  for (uint64_t i = 1; i <= 1'000'000; ++i) {
    const uint64_t tag = h.Add(Msg(i), kNever);
    ASSERT_NE(h.Take(tag), nullptr);
    ASSERT_LE(h.footprint(), 2 * h.size() + 65);
  }
  EXPECT_EQ(h.size(), 1u);
  EXPECT_EQ(Tags(h.TakeUpTo(UINT64_MAX)), (std::vector<uint64_t>{1}));
}

TEST(HeldDeliveriesTest, TakeFindsEveryTagAfterHolesAreSqueezedOut) {
  // Tags sit at their distance from the front until holes are squeezed out;
  // after that a tag is found by searching, and a taken one is still gone.
  // Tag 1 is held throughout, so the front never moves; one in four stays.
  HeldDeliveries h;
  for (uint64_t id = 1; id <= 400; ++id) ASSERT_EQ(h.Add(Msg(id), kNever), id);
  for (uint64_t tag = 1; tag <= 400; ++tag) {
    if (tag % 4 != 1) {
      ASSERT_NE(h.Take(tag), nullptr) << tag;
    }
  }
  ASSERT_EQ(h.size(), 100u);
  ASSERT_LT(h.footprint(), 400u) << "the holes were squeezed out";
  for (uint64_t tag = 1; tag <= 401; ++tag) {
    if (tag % 4 == 1 && tag <= 400) continue;
    EXPECT_EQ(h.Take(tag), nullptr) << tag;
  }
  for (uint64_t tag = 400 - 3; tag >= 1; tag -= 4) {  // last first: squeezed again on the way
    MessagePtr m = h.Take(tag);
    ASSERT_NE(m, nullptr) << tag;
    EXPECT_EQ(m->id(), tag);
    if (tag < 4) break;
  }
  EXPECT_EQ(h.size(), 0u);
}

}  // namespace
}  // namespace basin::core
