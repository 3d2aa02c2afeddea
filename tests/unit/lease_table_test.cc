// LeaseTable alone: unary deliveries by lease number, their expiry index and
// the fixed-size record of how recent leases ended, with time passed in by hand.
#include "broker/core/lease_table.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "broker/core/delivery_tag.h"

namespace basin::core {
namespace {

using std::chrono::nanoseconds;
using std::chrono::seconds;

const TimePoint t0 = TimePoint() + std::chrono::hours(1);
constexpr uint64_t kIncarnation = 7;
const std::string kWhat = "queue 'q'";

MessagePtr Msg(uint64_t id, std::string_view payload = "payload") {
  return Message::Make(id, payload, {});
}

std::string Tag(uint64_t lease) { return FormatDeliveryTag({kIncarnation, lease}); }

// The code Find answers for `tag` (kept apart from the lease number it may return).
std::optional<Errc> FindError(const LeaseTable& t, const std::string& tag) {
  const Result<uint64_t> r = t.Find(tag, kWhat);
  if (r.ok()) return std::nullopt;
  return r.error().code;
}

// Hands out `n` more leases and ends each at once (as expired, which leaves
// the record of done leases as it was).
void HandOutAndExpire(LeaseTable& t, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i) {
    const std::string tag = t.Add(Msg(0), kNever);
    t.Take(ParseDeliveryTag(tag)->lease, LeaseTable::End::kExpired);
  }
}

TEST(LeaseTableTest, TagsNameTheIncarnationAndLeaseNumbersRisingFromOne) {
  LeaseTable t(kIncarnation);
  EXPECT_EQ(t.Add(Msg(10), kNever), "7.1");
  EXPECT_EQ(t.Add(Msg(11), kNever), "7.2");
  EXPECT_EQ(t.Add(Msg(12), kNever), "7.3");
  EXPECT_EQ(t.size(), 3u);
}

TEST(LeaseTableTest, FindReturnsTheLeaseOfALiveTag) {
  LeaseTable t(kIncarnation);
  t.Add(Msg(10), kNever);
  t.Add(Msg(11), kNever);
  const Result<uint64_t> r = t.Find("7.2", kWhat);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(), 2u);
  MessagePtr m = t.Take(r.value(), LeaseTable::End::kDone);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->id(), 11u);
}

TEST(LeaseTableTest, AMalformedTagIsInvalidDeliveryTag) {
  LeaseTable t(kIncarnation);
  t.Add(Msg(1), kNever);
  for (const std::string tag : {"", "7", "7.", ".1", "7.1.", "7.1.2", "x.1", "7.x", "-7.1", "7.-1",
                                "7.1 ", " 7.1", "7..1", "99999999999999999999999.1"}) {
    const Result<uint64_t> r = t.Find(tag, kWhat);
    ASSERT_FALSE(r.ok()) << "'" << tag << "'";
    EXPECT_EQ(r.error().code, Errc::kInvalidDeliveryTag) << "'" << tag << "'";
    EXPECT_NE(r.error().message.find(kWhat), std::string::npos) << r.error().message;
  }
}

TEST(LeaseTableTest, ALongTagIsCutShortInTheError) {
  LeaseTable t(kIncarnation);
  const std::string tag(1000, 'x');
  const Result<uint64_t> r = t.Find(tag, kWhat);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kInvalidDeliveryTag);
  EXPECT_NE(r.error().message.find("'" + std::string(64, 'x') + "...'"), std::string::npos)
      << r.error().message;
  EXPECT_EQ(r.error().message.find(std::string(65, 'x')), std::string::npos);
}

TEST(LeaseTableTest, ATagOfAnotherIncarnationIsUnknownDelivery) {
  LeaseTable t(kIncarnation);
  t.Add(Msg(1), kNever);
  const Result<uint64_t> r = t.Find("8.1", kWhat);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kUnknownDelivery);
  EXPECT_NE(r.error().message.find(kWhat), std::string::npos) << r.error().message;
  EXPECT_EQ(FindError(t, "0.1"), Errc::kUnknownDelivery);
  // An earlier incarnation's tag for a lease number this one has ended as
  // done is still not this incarnation's.
  t.Take(1, LeaseTable::End::kDone);
  EXPECT_EQ(FindError(t, "6.1"), Errc::kUnknownDelivery);
  EXPECT_EQ(FindError(t, "7.1"), Errc::kAlreadyDone);
}

TEST(LeaseTableTest, ALeaseNumberNeverHandedOutIsUnknownDelivery) {
  LeaseTable t(kIncarnation);
  EXPECT_EQ(FindError(t, "7.1"), Errc::kUnknownDelivery);  // empty table
  t.Add(Msg(1), kNever);
  t.Add(Msg(2), kNever);
  EXPECT_EQ(FindError(t, "7.0"), Errc::kUnknownDelivery);
  EXPECT_EQ(FindError(t, "7.3"), Errc::kUnknownDelivery);
  EXPECT_EQ(FindError(t, "7.18446744073709551615"), Errc::kUnknownDelivery);
  EXPECT_EQ(FindError(t, "7.2"), std::nullopt);
}

TEST(LeaseTableTest, ADoneLeaseIsAlreadyDone) {
  LeaseTable t(kIncarnation);
  t.Add(Msg(1), kNever);
  t.Take(1, LeaseTable::End::kDone);
  const Result<uint64_t> r = t.Find("7.1", kWhat);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kAlreadyDone);
  EXPECT_NE(r.error().message.find(kWhat), std::string::npos) << r.error().message;
}

TEST(LeaseTableTest, AReleasedExpiredOrDeadLetteredLeaseIsLeaseExpired) {
  LeaseTable t(kIncarnation);
  t.Add(Msg(1), kNever);
  t.Add(Msg(2), kNever);
  t.Add(Msg(3), kNever);
  t.Add(Msg(4), kNever);
  t.Take(4, LeaseTable::End::kDone);  // the record exists: the others' bits are clear
  t.Take(1, LeaseTable::End::kReleased);
  t.Take(2, LeaseTable::End::kExpired);
  t.Take(3, LeaseTable::End::kDeadLettered);
  for (const std::string tag : {"7.1", "7.2", "7.3"}) {
    const Result<uint64_t> r = t.Find(tag, kWhat);
    ASSERT_FALSE(r.ok()) << tag;
    EXPECT_EQ(r.error().code, Errc::kLeaseExpired) << tag;
    EXPECT_NE(r.error().message.find(kWhat), std::string::npos) << r.error().message;
  }
  EXPECT_EQ(FindError(t, "7.4"), Errc::kAlreadyDone);
}

TEST(LeaseTableTest, ALeaseEndedBeforeAnyIsDoneIsLeaseExpired) {
  LeaseTable t(kIncarnation);
  t.Add(Msg(1), kNever);
  t.Take(1, LeaseTable::End::kReleased);
  EXPECT_EQ(FindError(t, "7.1"), Errc::kLeaseExpired);
}

TEST(LeaseTableTest, RememberReplacesHowALeaseEnded) {
  LeaseTable t(kIncarnation);
  for (uint64_t i = 1; i <= 3; ++i) t.Add(Msg(i), kNever);
  // A released message that was dead-lettered instead.
  t.Take(1, LeaseTable::End::kReleased);
  t.Remember(1, LeaseTable::End::kDeadLettered);
  EXPECT_EQ(FindError(t, "7.1"), Errc::kLeaseExpired);
  t.Take(2, LeaseTable::End::kExpired);
  t.Remember(2, LeaseTable::End::kDone);
  EXPECT_EQ(FindError(t, "7.2"), Errc::kAlreadyDone);
  t.Take(3, LeaseTable::End::kDone);
  t.Remember(3, LeaseTable::End::kReleased);
  EXPECT_EQ(FindError(t, "7.3"), Errc::kLeaseExpired);
}

TEST(LeaseTableTest, ADoneLeaseIsAlreadyDoneUntilItsNumberLeavesTheWindow) {
  LeaseTable t(kIncarnation);
  HandOutAndExpire(t, 10);  // the window does not start at lease 1
  t.Add(Msg(1), kNever);
  const uint64_t lease = 11;
  t.Take(lease, LeaseTable::End::kDone);
  const std::string tag = Tag(lease);

  HandOutAndExpire(t, LeaseTable::kEndedKept - 1);
  EXPECT_EQ(FindError(t, tag), Errc::kAlreadyDone);
  // The kEndedKept-th newer lease takes its number's slot.
  HandOutAndExpire(t, 1);
  EXPECT_EQ(FindError(t, tag), Errc::kLeaseExpired);
  HandOutAndExpire(t, 1);
  EXPECT_EQ(FindError(t, tag), Errc::kLeaseExpired);
}

TEST(LeaseTableTest, TheNewestNumberOfASlotIsNotAlreadyDoneForAnOlderOne) {
  LeaseTable t(kIncarnation);
  t.Add(Msg(1), kNever);
  t.Take(1, LeaseTable::End::kDone);
  HandOutAndExpire(t, LeaseTable::kEndedKept - 1);
  // Lease 1 + kEndedKept shares lease 1's slot; while it is live, it is live.
  t.Add(Msg(2), kNever);
  const uint64_t newer = 1 + LeaseTable::kEndedKept;
  const Result<uint64_t> live = t.Find(Tag(newer), kWhat);
  ASSERT_TRUE(live.ok());
  EXPECT_EQ(live.value(), newer);
  EXPECT_EQ(FindError(t, Tag(1)), Errc::kLeaseExpired);
  // Released, the newer lease is expired, not done.
  t.Take(newer, LeaseTable::End::kReleased);
  EXPECT_EQ(FindError(t, Tag(newer)), Errc::kLeaseExpired);
}

TEST(LeaseTableTest, HandingOutANumberClearsTheDoneMarkOfItsSlot) {
  LeaseTable t(kIncarnation);
  t.Add(Msg(1), kNever);
  t.Take(1, LeaseTable::End::kDone);
  HandOutAndExpire(t, LeaseTable::kEndedKept - 1);
  const uint64_t newer = 1 + LeaseTable::kEndedKept;  // lease 1's slot
  t.Add(Msg(2), kNever);
  // Taken back without an end of its own (the queue was emptied): it never
  // was done.
  EXPECT_EQ(t.TakeAll().size(), 1u);
  EXPECT_EQ(FindError(t, Tag(newer)), Errc::kLeaseExpired);
}

TEST(LeaseTableTest, ALeaseHeldPastTheWindowLeavesItsSlotToTheNewerNumber) {
  LeaseTable t(kIncarnation);
  t.Add(Msg(1), kNever);
  t.Add(Msg(2), kNever);
  HandOutAndExpire(t, LeaseTable::kEndedKept);
  // Leases 1 + kEndedKept and 2 + kEndedKept share 1's and 2's slots.
  const uint64_t newer1 = 1 + LeaseTable::kEndedKept;
  const uint64_t newer2 = 2 + LeaseTable::kEndedKept;
  t.Remember(newer1, LeaseTable::End::kDone);
  EXPECT_EQ(FindError(t, Tag(newer1)), Errc::kAlreadyDone);

  // Lease 1, still live, is found; ending it must not clear the newer
  // number's record.
  ASSERT_TRUE(t.Find(Tag(1), kWhat).ok());
  MessagePtr m = t.Take(1, LeaseTable::End::kExpired);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->id(), 1u);
  EXPECT_EQ(FindError(t, Tag(newer1)), Errc::kAlreadyDone);
  EXPECT_EQ(FindError(t, Tag(1)), Errc::kLeaseExpired);

  // Nor may lease 2 ending as done mark the newer number as done.
  EXPECT_EQ(FindError(t, Tag(newer2)), Errc::kLeaseExpired);
  t.Take(2, LeaseTable::End::kDone);
  EXPECT_EQ(FindError(t, Tag(newer2)), Errc::kLeaseExpired);
  EXPECT_EQ(FindError(t, Tag(2)), Errc::kLeaseExpired);
  EXPECT_EQ(t.size(), 0u);
}

TEST(LeaseTableTest, TheRecordOfHowLeasesEndedWrapsAroundItsWindowAgainAndAgain) {
  LeaseTable t(kIncarnation);
  // Three times round the window, ending every other lease as done.
  const uint64_t total = 3 * LeaseTable::kEndedKept;
  for (uint64_t i = 0; i < total; ++i) {
    const std::string tag = t.Add(Msg(0), kNever);
    const uint64_t lease = ParseDeliveryTag(tag)->lease;
    ASSERT_EQ(lease, i + 1);
    t.Take(lease, lease % 2 == 0 ? LeaseTable::End::kDone : LeaseTable::End::kReleased);
  }
  EXPECT_EQ(FindError(t, Tag(total)), Errc::kAlreadyDone);
  EXPECT_EQ(FindError(t, Tag(total - 1)), Errc::kLeaseExpired);
  const uint64_t oldest_kept = total - LeaseTable::kEndedKept + 1;  // odd: released
  EXPECT_EQ(FindError(t, Tag(oldest_kept)), Errc::kLeaseExpired);
  EXPECT_EQ(FindError(t, Tag(oldest_kept + 1)), Errc::kAlreadyDone);
  // Done, but out of the window.
  EXPECT_EQ(FindError(t, Tag(oldest_kept - 1)), Errc::kLeaseExpired);
  EXPECT_EQ(FindError(t, Tag(2)), Errc::kLeaseExpired);
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.bytes(), 0u);
}

TEST(LeaseTableTest, DueListsLiveLeasesExpiringAtOrBeforeNowInExpiryOrder) {
  LeaseTable t(kIncarnation);
  EXPECT_TRUE(t.Due(t0 + std::chrono::hours(1000)).empty());
  EXPECT_EQ(t.next_expiry(), kNever);
  t.Add(Msg(1), t0 + seconds(2));
  t.Add(Msg(2), t0 + seconds(1));
  t.Add(Msg(3), t0 + seconds(1));
  t.Add(Msg(4), kNever);
  EXPECT_EQ(t.next_expiry(), t0 + seconds(1));

  EXPECT_TRUE(t.Due(t0 + seconds(1) - nanoseconds(1)).empty());
  EXPECT_EQ(t.Due(t0 + seconds(1)), (std::vector<uint64_t>{2, 3}));
  // Due only looks: nothing is taken.
  EXPECT_EQ(t.Due(t0 + seconds(2)), (std::vector<uint64_t>{2, 3, 1}));
  EXPECT_EQ(t.size(), 4u);

  t.Take(2, LeaseTable::End::kExpired);
  t.Take(3, LeaseTable::End::kExpired);
  EXPECT_EQ(t.next_expiry(), t0 + seconds(2));
  EXPECT_EQ(t.Due(t0 + std::chrono::hours(1000)), (std::vector<uint64_t>{1}));
  t.Take(1, LeaseTable::End::kDone);
  EXPECT_EQ(t.next_expiry(), kNever);
  EXPECT_TRUE(t.Due(t0 + std::chrono::hours(1000)).empty());
}

TEST(LeaseTableTest, ExtendMovesALeaseInTheExpiryOrder) {
  LeaseTable t(kIncarnation);
  t.Add(Msg(1), t0 + seconds(1));
  t.Add(Msg(2), t0 + seconds(2));
  t.Extend(1, t0 + seconds(3));
  EXPECT_EQ(t.next_expiry(), t0 + seconds(2));
  EXPECT_TRUE(t.Due(t0 + seconds(1)).empty());
  EXPECT_EQ(t.Due(t0 + seconds(3)), (std::vector<uint64_t>{2, 1}));
  // Shortened, too; and to never.
  t.Extend(1, t0);
  EXPECT_EQ(t.next_expiry(), t0);
  EXPECT_EQ(t.Due(t0), (std::vector<uint64_t>{1}));
  t.Extend(1, kNever);
  t.Extend(2, kNever);
  EXPECT_EQ(t.next_expiry(), kNever);
  EXPECT_TRUE(t.Due(t0 + std::chrono::hours(1000)).empty());
  EXPECT_TRUE(t.Find(Tag(1), kWhat).ok());  // still live
}

TEST(LeaseTableTest, BytesCountsLiveMessagesAndReturnsToZeroAsTheyEnd) {
  LeaseTable t(kIncarnation);
  EXPECT_EQ(t.bytes(), 0u);
  const uint64_t a = Msg(1, "a")->bytes();
  const uint64_t b = Msg(2, std::string(100, 'b'))->bytes();
  const uint64_t c = Message::Make(3, "c", {{"k", "v"}})->bytes();
  ASSERT_EQ(a, 1u);
  ASSERT_EQ(b, 100u);
  ASSERT_GT(c, 1u);  // headers count too
  t.Add(Msg(1, "a"), kNever);
  t.Add(Msg(2, std::string(100, 'b')), kNever);
  t.Add(Message::Make(3, "c", {{"k", "v"}}), kNever);
  EXPECT_EQ(t.bytes(), a + b + c);
  t.Take(2, LeaseTable::End::kDone);
  EXPECT_EQ(t.bytes(), a + c);
  t.Take(1, LeaseTable::End::kReleased);
  t.Take(3, LeaseTable::End::kExpired);
  EXPECT_EQ(t.bytes(), 0u);
  EXPECT_EQ(t.size(), 0u);
}

TEST(LeaseTableTest, TakeAllHandsBackEveryLiveMessageAndEmptiesTheTable) {
  LeaseTable t(kIncarnation);
  t.Add(Msg(10), t0 + seconds(1));
  t.Add(Msg(11), t0 + seconds(2));
  t.Add(Msg(12), kNever);
  t.Take(2, LeaseTable::End::kDone);

  std::vector<MessagePtr> all = t.TakeAll();
  std::vector<uint64_t> ids;
  for (const MessagePtr& m : all) ids.push_back(m->id());
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<uint64_t>{10, 12}));
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.bytes(), 0u);
  EXPECT_EQ(t.next_expiry(), kNever);
  EXPECT_TRUE(t.Due(t0 + std::chrono::hours(1000)).empty());
  EXPECT_TRUE(t.TakeAll().empty());

  // Their tags name ended leases; the done one is still done; numbering goes on.
  EXPECT_EQ(FindError(t, "7.1"), Errc::kLeaseExpired);
  EXPECT_EQ(FindError(t, "7.2"), Errc::kAlreadyDone);
  EXPECT_EQ(FindError(t, "7.3"), Errc::kLeaseExpired);
  EXPECT_EQ(t.Add(Msg(13), kNever), "7.4");
}

}  // namespace
}  // namespace basin::core
