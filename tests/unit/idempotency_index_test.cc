// IdempotencyIndex and ProducerSequences alone: dedup ids, producer sequence
// numbers, in-batch resolution, forgetting and their memory, with time passed
// in by hand.
#include "broker/core/idempotency_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "broker/core/producer_sequences.h"

namespace basin::core {
namespace {

using std::chrono::nanoseconds;
using std::chrono::seconds;

const TimePoint t0 = TimePoint() + std::chrono::hours(1);
const Duration kWindow = seconds(80);
const std::string kWhat = "queue 'q'";
constexpr uint64_t kTwoTo63 = uint64_t{1} << 63;
constexpr uint64_t kPayloadBytes = 7;  // "payload"
constexpr uint64_t kIdBytes = ProducerSequences::kBytesPerId;

QueueLimits Limits(size_t max_dedup_ids = 1000, size_t max_producers = 10) {
  QueueLimits l;
  l.dedup_window = kWindow;
  l.max_dedup_ids = max_dedup_ids;
  l.max_producers = max_producers;
  return l;
}

// A batch as Queue::PutBatch builds it: message i (of those that passed
// validation) sits at results[slots[i]] and has sequence first + slots[i].
PutWaiter Batch(const std::vector<std::string>& dedup_ids, std::string producer = "",
                uint64_t first_sequence = 0, std::vector<size_t> slots = {}) {
  PutWaiter p;
  if (slots.empty()) {
    for (size_t i = 0; i < dedup_ids.size(); ++i) slots.push_back(i);
  }
  size_t results = 0;
  for (size_t i = 0; i < dedup_ids.size(); ++i) {
    p.msgs.push_back(Message::Make(0, "payload", {}));
    p.dedup_ids.push_back(dedup_ids[i]);
    results = std::max(results, slots[i] + 1);
  }
  p.slots = std::move(slots);
  p.results.resize(results);
  p.producer = std::move(producer);
  p.first_sequence = first_sequence;
  return p;
}

// Resolves and admits `p`, handing out ids from `next_id`; returns the
// indexes of the messages enqueued.
std::vector<size_t> Admit(IdempotencyIndex& index, PutWaiter& p, TimePoint now, uint64_t& next_id,
                          PutKeys* keys = nullptr) {
  index.Resolve(p, now);
  std::vector<size_t> enqueued;
  index.Admit(p, now, keys, [&](size_t i) {
    EXPECT_NE(p.msgs[i], nullptr);
    enqueued.push_back(i);
    p.msgs[i].reset();
    return next_id++;
  });
  return enqueued;
}

using Pairs = std::vector<std::pair<size_t, uint64_t>>;
using Copies = std::vector<std::pair<size_t, size_t>>;

// --- ProducerSequences ---

TEST(ProducerSequencesTest, GetCreatesOneRecordPerProducerAndChargesItsName) {
  ProducerSequences s(kWindow, 10);
  EXPECT_EQ(s.bytes(), 0u);
  EXPECT_EQ(ProducerSequences::RecordBytes("abc") - ProducerSequences::RecordBytes(""), 3u);
  ProducerSequences::Producer* p = s.Get("abc", t0);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->highest(), 0u);
  EXPECT_EQ(p->floor(), 0u);
  EXPECT_FALSE(p->Find(1).has_value());
  EXPECT_EQ(s.bytes(), ProducerSequences::RecordBytes("abc"));
  EXPECT_EQ(s.Get("abc", t0 + seconds(1)), p);
  EXPECT_EQ(s.bytes(), ProducerSequences::RecordBytes("abc"));
  ASSERT_NE(s.Get("de", t0 + seconds(1)), nullptr);
  EXPECT_EQ(s.bytes(),
            ProducerSequences::RecordBytes("abc") + ProducerSequences::RecordBytes("de"));
}

TEST(ProducerSequencesTest, FindAnswersRecordedNumbersWithTheirIdsAndOthersAsNewWork) {
  ProducerSequences s(kWindow, 10);
  ProducerSequences::Producer& p = *s.Get("p", t0);
  s.Record(p, 1, 100);
  s.Record(p, 2, 101);
  s.Record(p, 3, 102);
  EXPECT_EQ(p.Find(1), 100u);
  EXPECT_EQ(p.Find(2), 101u);
  EXPECT_EQ(p.Find(3), 102u);
  EXPECT_EQ(p.Find(4), std::nullopt);
  EXPECT_EQ(p.Find(0), std::nullopt);
  EXPECT_EQ(p.highest(), 3u);
  EXPECT_EQ(p.floor(), 0u);
  EXPECT_EQ(s.bytes(), ProducerSequences::RecordBytes("p") + 3 * kIdBytes);
}

TEST(ProducerSequencesTest, SparseNumbersCostOnlyWhatIsRecordedSoAJumpCostsNothing) {
  ProducerSequences s(kWindow, 10);
  ProducerSequences::Producer& p = *s.Get("p", t0);
  s.Record(p, 1, 100);
  s.Record(p, 1'000'000'000'000, 101);
  s.Record(p, kTwoTo63 - 1, 102);
  EXPECT_EQ(s.bytes(), ProducerSequences::RecordBytes("p") + 3 * kIdBytes);
  EXPECT_EQ(p.highest(), kTwoTo63 - 1);
  EXPECT_EQ(p.floor(), 0u);
  // The numbers skipped were never enqueued: new work.
  EXPECT_EQ(p.Find(2), std::nullopt);
  EXPECT_EQ(p.Find(999'999'999'999), std::nullopt);
  EXPECT_EQ(p.Find(1'000'000'000'000), 101u);
  EXPECT_EQ(p.Find(kTwoTo63 - 2), std::nullopt);
  EXPECT_EQ(p.Find(kTwoTo63 - 1), 102u);
  EXPECT_EQ(p.Find(kTwoTo63), std::nullopt);
}

TEST(ProducerSequencesTest, ARecordKeepsTheLastKIdsKeptNumbersAndRaisesItsFloor) {
  ProducerSequences s(kWindow, 10);
  ProducerSequences::Producer& p = *s.Get("p", t0);
  const uint64_t full =
      ProducerSequences::RecordBytes("p") + ProducerSequences::kIdsKept * kIdBytes;
  for (uint64_t seq = 1; seq <= ProducerSequences::kIdsKept; ++seq) s.Record(p, seq, 1000 + seq);
  EXPECT_EQ(p.floor(), 0u);
  EXPECT_EQ(p.Find(1), 1001u);
  EXPECT_EQ(s.bytes(), full);

  s.Record(p, ProducerSequences::kIdsKept + 1, 5);
  EXPECT_EQ(s.bytes(), full);  // one in, one out
  EXPECT_EQ(p.floor(), 2u);
  EXPECT_EQ(p.Find(1), 0u);  // seen, but its id is no longer kept
  EXPECT_EQ(p.Find(2), 1002u);
  EXPECT_EQ(p.Find(ProducerSequences::kIdsKept + 1), 5u);
  EXPECT_EQ(p.highest(), ProducerSequences::kIdsKept + 1);

  // A number below the floor is not recorded.
  s.Record(p, 1, 77);
  EXPECT_EQ(s.bytes(), full);
  EXPECT_EQ(p.Find(1), 0u);
}

TEST(ProducerSequencesTest, TheFloorOfASparseRecordIsItsOldestKeptNumber) {
  ProducerSequences s(kWindow, 10);
  ProducerSequences::Producer& p = *s.Get("p", t0);
  for (uint64_t i = 1; i <= ProducerSequences::kIdsKept + 1; ++i) s.Record(p, 10 * i, i);
  EXPECT_EQ(p.floor(), 20u);
  EXPECT_EQ(p.Find(10), 0u);
  EXPECT_EQ(p.Find(15), 0u);
  EXPECT_EQ(p.Find(20), 2u);
  EXPECT_EQ(p.Find(25), std::nullopt);
  EXPECT_EQ(s.bytes(),
            ProducerSequences::RecordBytes("p") + ProducerSequences::kIdsKept * kIdBytes);
}

TEST(ProducerSequencesTest, ASkippedNumberIsRecordedLateOnlyNearTheEnd) {
  ProducerSequences s(kWindow, 10);
  ProducerSequences::Producer& near = *s.Get("near", t0);
  s.Record(near, 1, 1);
  for (uint64_t seq = 3; seq < 3 + ProducerSequences::kMaxBackfill; ++seq) s.Record(near, seq, seq);
  const uint64_t before = s.bytes();
  s.Record(near, 2, 222);  // kMaxBackfill numbers behind the last
  EXPECT_EQ(near.Find(2), 222u);
  EXPECT_EQ(near.Find(1), 1u);
  EXPECT_EQ(near.Find(3), 3u);
  EXPECT_EQ(s.bytes(), before + kIdBytes);

  ProducerSequences::Producer& far = *s.Get("far", t0);
  s.Record(far, 1, 1);
  for (uint64_t seq = 3; seq < 4 + ProducerSequences::kMaxBackfill; ++seq) s.Record(far, seq, seq);
  const uint64_t before_far = s.bytes();
  s.Record(far, 2, 222);  // one further back: not recorded
  EXPECT_EQ(far.Find(2), std::nullopt);
  EXPECT_EQ(s.bytes(), before_far);
  EXPECT_EQ(far.highest(), 3 + ProducerSequences::kMaxBackfill);
}

TEST(ProducerSequencesTest, ForgetMarksOnlyTheNamedNumbersRecordedWithThoseIds) {
  ProducerSequences s(kWindow, 10);
  ProducerSequences::Producer* p = s.Get("p", t0);
  s.Record(*p, 1, 10);
  s.Record(*p, 2, 11);
  s.Record(*p, 3, 12);
  s.Record(*p, 4, 13);
  const uint64_t bytes = s.bytes();

  // 1: forgotten; 3: named with another id; 7: never recorded.
  s.Forget("p", {{1, 10}, {3, 99}, {7, 14}});
  EXPECT_EQ(p->Find(1), std::nullopt);
  EXPECT_EQ(p->Find(2), 11u);
  EXPECT_EQ(p->Find(3), 12u);
  EXPECT_EQ(p->Find(4), 13u);
  EXPECT_EQ(p->highest(), 4u);
  EXPECT_EQ(s.bytes(), bytes);  // marked, not erased

  // The resend is recorded in place.
  s.Record(*p, 1, 20);
  EXPECT_EQ(p->Find(1), 20u);
  EXPECT_EQ(s.bytes(), bytes);

  // Another producer's name, or an unknown one, changes nothing.
  ASSERT_NE(s.Get("other", t0), nullptr);
  const uint64_t with_other = s.bytes();
  s.Forget("other", {{2, 11}});
  s.Forget("nobody", {{2, 11}});
  p = s.Get("p", t0);
  EXPECT_EQ(p->Find(2), 11u);
  EXPECT_EQ(s.bytes(), with_other);
}

TEST(ProducerSequencesTest, MaxProducersCapsHowManyAreRememberedAtOnce) {
  ProducerSequences s(kWindow, 2);
  ASSERT_NE(s.Get("a", t0), nullptr);
  ASSERT_NE(s.Get("b", t0), nullptr);
  EXPECT_EQ(s.Get("c", t0), nullptr);
  EXPECT_EQ(s.bytes(), ProducerSequences::RecordBytes("a") + ProducerSequences::RecordBytes("b"));
  // Known producers are still answered.
  EXPECT_NE(s.Get("a", t0 + seconds(1)), nullptr);
  EXPECT_NE(s.Get("b", t0 + seconds(1)), nullptr);
  EXPECT_EQ(s.Get("c", t0 + seconds(1)), nullptr);

  ProducerSequences none(kWindow, 0);
  EXPECT_EQ(none.Get("a", t0), nullptr);
  EXPECT_EQ(none.bytes(), 0u);
}

TEST(ProducerSequencesTest, AProducerQuietForLongerThanTheWindowStartsAfresh) {
  ProducerSequences s(kWindow, 10);
  ProducerSequences::Producer* p = s.Get("p", t0);
  s.Record(*p, 1, 10);
  s.Record(*p, 2, 11);
  // Quiet for exactly the window: still remembered.
  p = s.Get("p", t0 + kWindow);
  EXPECT_EQ(p->Find(2), 11u);
  EXPECT_EQ(s.bytes(), ProducerSequences::RecordBytes("p") + 2 * kIdBytes);
  // Quiet for longer: new.
  p = s.Get("p", t0 + 2 * kWindow + nanoseconds(1));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->Find(1), std::nullopt);
  EXPECT_EQ(p->Find(2), std::nullopt);
  EXPECT_EQ(p->highest(), 0u);
  EXPECT_EQ(p->floor(), 0u);
  EXPECT_EQ(s.bytes(), ProducerSequences::RecordBytes("p"));
}

TEST(ProducerSequencesTest, AQuietProducerStartsAfreshEvenBetweenSweeps) {
  ProducerSequences s(kWindow, 10);
  ProducerSequences::Producer* p = s.Get("p", t0);
  s.Record(*p, 1, 10);
  s.Record(*p, 2, 11);
  s.Record(*p, 3, 12);
  // A sweep at t0 + 75s; the next is not due before t0 + 85s.
  ASSERT_NE(s.Get("other", t0 + seconds(75)), nullptr);
  p = s.Get("p", t0 + kWindow + seconds(1));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->Find(1), std::nullopt);
  EXPECT_EQ(p->highest(), 0u);
  EXPECT_EQ(s.bytes(),
            ProducerSequences::RecordBytes("p") + ProducerSequences::RecordBytes("other"));
}

TEST(ProducerSequencesTest, QuietProducersAreSweptAndTheirBytesReturned) {
  ProducerSequences s(kWindow, 2);
  ProducerSequences::Producer* a = s.Get("a", t0);
  s.Record(*a, 1, 1);
  s.Record(*a, 2, 2);
  s.Record(*a, 3, 3);
  ProducerSequences::Producer* b = s.Get("bb", t0);
  s.Record(*b, 1, 4);
  EXPECT_EQ(s.bytes(), ProducerSequences::RecordBytes("a") + ProducerSequences::RecordBytes("bb") +
                           4 * kIdBytes);
  // Quiet for exactly the window: the table is still full.
  EXPECT_EQ(s.Get("c", t0 + kWindow), nullptr);
  // Sweeps come a few times a window: by the next, both are gone.
  ProducerSequences::Producer* c = s.Get("c", t0 + kWindow + kWindow / 8);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(s.bytes(), ProducerSequences::RecordBytes("c"));
  // Room for one more; "a" comes back as a new producer.
  a = s.Get("a", t0 + kWindow + kWindow / 8);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->Find(1), std::nullopt);
  EXPECT_EQ(s.Get("bb", t0 + kWindow + kWindow / 8), nullptr);
}

TEST(ProducerSequencesTest, ASweepKeepsProducersActiveWithinTheWindow) {
  ProducerSequences s(kWindow, 2);
  s.Record(*s.Get("a", t0), 1, 1);
  ProducerSequences::Producer* b = s.Get("b", t0 + seconds(50));
  s.Record(*b, 1, 2);
  s.Record(*b, 2, 3);
  // "a" has been quiet for longer than the window, "b" has not.
  ASSERT_NE(s.Get("c", t0 + kWindow + nanoseconds(1)), nullptr);
  EXPECT_EQ(s.Get("d", t0 + kWindow + nanoseconds(1)), nullptr);
  EXPECT_EQ(s.bytes(), ProducerSequences::RecordBytes("b") + ProducerSequences::RecordBytes("c") +
                           2 * kIdBytes);
  EXPECT_EQ(s.Get("b", t0 + kWindow + nanoseconds(1))->Find(2), 3u);
}

// --- IdempotencyIndex ---

TEST(IdempotencyIndexTest, CheckOriginTakesSequencesFromOneUpToTwoToThe63MinusTheBatch) {
  IdempotencyIndex index(Limits());
  EXPECT_TRUE(index.CheckOrigin("p", 1, 1, t0, kWhat).ok());
  EXPECT_TRUE(index.CheckOrigin("p", 1, 10'000, t0, kWhat).ok());
  EXPECT_TRUE(index.CheckOrigin("p", kTwoTo63 - 1, 1, t0, kWhat).ok());
  EXPECT_TRUE(index.CheckOrigin("p", kTwoTo63 - 10, 10, t0, kWhat).ok());

  const Result<void> zero = index.CheckOrigin("p", 0, 1, t0, kWhat);
  ASSERT_FALSE(zero.ok());
  EXPECT_EQ(zero.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(zero.error().message, "first_sequence 0 is out of range (1 to 2^63 - batch size)");
  for (const auto& [first, count] : std::vector<std::pair<uint64_t, size_t>>{
           {kTwoTo63, 1}, {kTwoTo63 - 9, 10}, {kTwoTo63 + 1, 1}, {UINT64_MAX, 1}}) {
    const Result<void> r = index.CheckOrigin("p", first, count, t0, kWhat);
    ASSERT_FALSE(r.ok()) << first << " + " << count;
    EXPECT_EQ(r.error().code, Errc::kInvalidArgument) << first << " + " << count;
  }
}

TEST(IdempotencyIndexTest, CheckOriginRefusesAnUnknownProducerOnceMaxProducersAreRemembered) {
  IdempotencyIndex index(Limits(1000, 2));
  EXPECT_TRUE(index.CheckOrigin("a", 1, 1, t0, kWhat).ok());
  EXPECT_TRUE(index.CheckOrigin("b", 1, 1, t0, kWhat).ok());
  const Result<void> r = index.CheckOrigin("c", 1, 1, t0, kWhat);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kTooManyProducers);
  EXPECT_EQ(r.error().message,
            "queue 'q' already remembers the limit of 2 idempotent producers active within the "
            "dedup window");
  EXPECT_TRUE(index.CheckOrigin("a", 5, 1, t0, kWhat).ok());
  EXPECT_EQ(index.bytes(),
            ProducerSequences::RecordBytes("a") + ProducerSequences::RecordBytes("b"));
  // A malformed range is refused as such, even at the cap.
  EXPECT_EQ(index.CheckOrigin("c", 0, 1, t0, kWhat).error().code, Errc::kInvalidArgument);
  // Once the others have gone quiet (and a sweep has come), there is room.
  EXPECT_TRUE(index.CheckOrigin("c", 1, 1, t0 + kWindow + kWindow / 8, kWhat).ok());
}

TEST(IdempotencyIndexTest, CheckOriginRefusesABatchStartingBelowWhatTheRecordAnswersFor) {
  IdempotencyIndex index(Limits());
  PutKeys keys;
  keys.producer = "p";
  for (uint64_t seq = 1; seq <= ProducerSequences::kIdsKept + 1; ++seq) {
    keys.sequences.emplace_back(seq, seq);
  }
  index.Restore(keys, t0);  // the record now answers from 2 on
  const Result<void> r = index.CheckOrigin("p", 1, 5, t0, kWhat);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(r.error().message,
            "first_sequence 1 is older than queue 'q' remembers for this "
            "producer (from 2)");
  EXPECT_TRUE(index.CheckOrigin("p", 2, 5, t0, kWhat).ok());
  EXPECT_TRUE(index.CheckOrigin("p", ProducerSequences::kIdsKept + 2, 1, t0, kWhat).ok());
  EXPECT_TRUE(index.CheckOrigin("other", 1, 5, t0, kWhat).ok());
}

TEST(IdempotencyIndexTest, ResolveCountsNewMessagesTheirBytesAndTheKeysTheyWillCost) {
  IdempotencyIndex index(Limits());
  PutWaiter p = Batch({"a", "", "bb"});
  const PutWaiter::Resolution& r = index.Resolve(p, t0);
  EXPECT_EQ(r.count, 3u);
  EXPECT_EQ(r.bytes, 3 * kPayloadBytes);
  EXPECT_EQ(r.keys, IdempotencyIndex::DedupBytes(1) + IdempotencyIndex::DedupBytes(2));
  EXPECT_TRUE(r.duplicates.empty());
  EXPECT_TRUE(r.copies.empty());
  EXPECT_EQ(&r, &*p.resolved);   // kept on the putter
  EXPECT_EQ(index.bytes(), 0u);  // nothing is remembered before Admit

  PutWaiter q = Batch({"", "c"}, "prod", 1);
  const PutWaiter::Resolution& rq = index.Resolve(q, t0);
  EXPECT_EQ(rq.count, 2u);
  EXPECT_EQ(rq.bytes, 2 * kPayloadBytes);
  EXPECT_EQ(rq.keys, 2 * kIdBytes + IdempotencyIndex::DedupBytes(1));
}

TEST(IdempotencyIndexTest, AnEmptyBatchResolvesToNothing) {
  IdempotencyIndex index(Limits());
  PutWaiter p = Batch({});
  const PutWaiter::Resolution& r = index.Resolve(p, t0);
  EXPECT_EQ(r.count, 0u);
  EXPECT_EQ(r.bytes, 0u);
  EXPECT_EQ(r.keys, 0u);
  uint64_t next_id = 1;
  EXPECT_TRUE(Admit(index, p, t0, next_id).empty());
  EXPECT_EQ(index.bytes(), 0u);
  EXPECT_EQ(index.next_expiry(), kNever);
}

TEST(IdempotencyIndexTest, AResendWithinTheWindowIsAnsweredWithTheOriginalIds) {
  IdempotencyIndex index(Limits());
  uint64_t next_id = 1;
  PutWaiter first = Batch({"a", "b"});
  EXPECT_EQ(Admit(index, first, t0, next_id), (std::vector<size_t>{0, 1}));
  EXPECT_EQ(first.results[0].message_id, 1u);
  EXPECT_EQ(first.results[1].message_id, 2u);
  EXPECT_FALSE(first.results[0].duplicate);

  PutWaiter resend = Batch({"b", "c", "a"});
  const PutWaiter::Resolution& r = index.Resolve(resend, t0 + kWindow);
  EXPECT_EQ(r.duplicates, (Pairs{{0, 2}, {2, 1}}));
  EXPECT_EQ(r.count, 1u);
  EXPECT_EQ(r.bytes, kPayloadBytes);
  EXPECT_EQ(r.keys, IdempotencyIndex::DedupBytes(1));
  EXPECT_EQ(Admit(index, resend, t0 + kWindow, next_id), (std::vector<size_t>{1}));
  EXPECT_EQ(resend.results[0].message_id, 2u);
  EXPECT_TRUE(resend.results[0].duplicate);
  EXPECT_EQ(resend.results[1].message_id, 3u);
  EXPECT_FALSE(resend.results[1].duplicate);
  EXPECT_EQ(resend.results[2].message_id, 1u);
  EXPECT_TRUE(resend.results[2].duplicate);
  // The duplicates' messages were dropped.
  EXPECT_EQ(resend.msgs[0], nullptr);
  EXPECT_EQ(resend.msgs[2], nullptr);
}

TEST(IdempotencyIndexTest, ADedupIdOlderThanTheWindowIsNewWork) {
  IdempotencyIndex index(Limits());
  uint64_t next_id = 1;
  PutWaiter first = Batch({"a"});
  Admit(index, first, t0, next_id);
  PutWaiter resend = Batch({"a"});
  const PutWaiter::Resolution& r = index.Resolve(resend, t0 + kWindow + nanoseconds(1));
  EXPECT_TRUE(r.duplicates.empty());
  EXPECT_EQ(r.count, 1u);
  EXPECT_EQ(Admit(index, resend, t0 + kWindow + nanoseconds(1), next_id), (std::vector<size_t>{0}));
  EXPECT_EQ(resend.results[0].message_id, 2u);
  EXPECT_FALSE(resend.results[0].duplicate);
  // Only the new record is kept.
  EXPECT_EQ(index.bytes(), IdempotencyIndex::DedupBytes(1));
}

TEST(IdempotencyIndexTest, CopiesWithinABatchAreAnsweredWithTheFirstOnesId) {
  IdempotencyIndex index(Limits());
  PutWaiter p = Batch({"x", "x", "y", "x", ""});
  const PutWaiter::Resolution& r = index.Resolve(p, t0);
  EXPECT_EQ(r.copies, (Copies{{1, 0}, {3, 0}}));
  EXPECT_TRUE(r.duplicates.empty());
  EXPECT_EQ(r.count, 3u);
  EXPECT_EQ(r.bytes, 3 * kPayloadBytes);
  EXPECT_EQ(r.keys, 2 * IdempotencyIndex::DedupBytes(1));

  uint64_t next_id = 10;
  EXPECT_EQ(Admit(index, p, t0, next_id), (std::vector<size_t>{0, 2, 4}));
  EXPECT_EQ(p.results[0].message_id, 10u);
  EXPECT_FALSE(p.results[0].duplicate);
  EXPECT_EQ(p.results[1].message_id, 10u);
  EXPECT_TRUE(p.results[1].duplicate);
  EXPECT_EQ(p.results[2].message_id, 11u);
  EXPECT_EQ(p.results[3].message_id, 10u);
  EXPECT_TRUE(p.results[3].duplicate);
  EXPECT_EQ(p.results[4].message_id, 12u);
  EXPECT_FALSE(p.results[4].duplicate);
  EXPECT_EQ(index.bytes(), 2 * IdempotencyIndex::DedupBytes(1));
}

TEST(IdempotencyIndexTest, AProducersResendIsFoundByTheSequenceOfEachMessagesSlot) {
  IdempotencyIndex index(Limits());
  uint64_t next_id = 1;
  // Message 1 of the batch failed validation: slots 0 and 2, sequences 10 and 12.
  PutWaiter first = Batch({"", ""}, "p", 10, {0, 2});
  PutKeys keys;
  EXPECT_EQ(Admit(index, first, t0, next_id, &keys), (std::vector<size_t>{0, 1}));
  EXPECT_EQ(first.results[0].message_id, 1u);
  EXPECT_EQ(first.results[2].message_id, 2u);
  EXPECT_EQ(keys.producer, "p");
  EXPECT_EQ(keys.sequences, (std::vector<std::pair<uint64_t, uint64_t>>{{10, 1}, {12, 2}}));
  EXPECT_TRUE(keys.dedup_ids.empty());
  EXPECT_EQ(index.bytes(), ProducerSequences::RecordBytes("p") + 2 * kIdBytes);

  // The same batch again, message 1 failing again: both are repeats.
  PutWaiter same = Batch({"", ""}, "p", 10, {0, 2});
  const PutWaiter::Resolution& rs = index.Resolve(same, t0 + seconds(1));
  EXPECT_EQ(rs.duplicates, (Pairs{{0, 1}, {1, 2}}));
  EXPECT_EQ(rs.count, 0u);

  // The whole batch again: 11 was never enqueued.
  PutWaiter resend = Batch({"", "", ""}, "p", 10);
  const PutWaiter::Resolution& r = index.Resolve(resend, t0 + seconds(1));
  EXPECT_EQ(r.duplicates, (Pairs{{0, 1}, {2, 2}}));
  EXPECT_EQ(r.count, 1u);
  EXPECT_EQ(r.keys, kIdBytes);
  EXPECT_EQ(Admit(index, resend, t0 + seconds(1), next_id), (std::vector<size_t>{1}));
  EXPECT_EQ(resend.results[1].message_id, 3u);
  EXPECT_TRUE(resend.results[0].duplicate);
  EXPECT_FALSE(resend.results[1].duplicate);
  EXPECT_TRUE(resend.results[2].duplicate);
  EXPECT_EQ(index.bytes(), ProducerSequences::RecordBytes("p") + 3 * kIdBytes);

  // Another producer's numbers are its own.
  PutWaiter other = Batch({""}, "q", 10);
  EXPECT_EQ(index.Resolve(other, t0 + seconds(1)).count, 1u);
}

TEST(IdempotencyIndexTest, AdmitListsTheKeysOfWhatItEnqueuedForTheJournal) {
  IdempotencyIndex index(Limits());
  uint64_t next_id = 1;
  PutWaiter first = Batch({"a", ""});
  PutKeys keys;
  Admit(index, first, t0, next_id, &keys);
  EXPECT_EQ(keys.dedup_ids, (std::vector<std::pair<std::string, uint64_t>>{{"a", 1}}));
  EXPECT_TRUE(keys.producer.empty());  // no producer: none named
  EXPECT_TRUE(keys.sequences.empty());

  // Duplicates and copies are not listed again.
  PutWaiter second = Batch({"a", "b", "b", "c"}, "p", 1);
  PutKeys more;
  EXPECT_EQ(Admit(index, second, t0, next_id, &more), (std::vector<size_t>{1, 3}));
  EXPECT_EQ(more.dedup_ids, (std::vector<std::pair<std::string, uint64_t>>{{"b", 3}, {"c", 4}}));
  EXPECT_EQ(more.producer, "p");
  EXPECT_EQ(more.sequences, (std::vector<std::pair<uint64_t, uint64_t>>{{2, 3}, {4, 4}}));
}

TEST(IdempotencyIndexTest, WhatAdmitKeepsIsWhatResolveCountedAsKeys) {
  IdempotencyIndex index(Limits());
  uint64_t next_id = 1;
  PutWaiter p = Batch({"abc", "", "de"}, "p", 1);
  const uint64_t keys = index.Resolve(p, t0).keys;
  const uint64_t before = index.bytes();  // the producer's record, made by Resolve
  EXPECT_EQ(before, ProducerSequences::RecordBytes("p"));
  Admit(index, p, t0, next_id);
  EXPECT_EQ(keys, 3 * kIdBytes + IdempotencyIndex::DedupBytes(3) + IdempotencyIndex::DedupBytes(2));
  EXPECT_EQ(index.bytes() - before, keys);
}

// With a producer, a message whose dedup id is a duplicate (or a copy within
// its batch) was charged kBytesPerId in Resolution::keys although Admit keeps
// nothing for it: an all-duplicate batch then had count == 0 but keys != 0,
// so Queue::CheckRoom reserved memory for it (and could block it on a full
// broker) instead of answering it.
TEST(IdempotencyIndexTest, AProducersMessageThatIsADedupDuplicateCostsNoKeyBytes) {
  IdempotencyIndex index(Limits());
  uint64_t next_id = 1;
  PutWaiter first = Batch({"a"});
  Admit(index, first, t0, next_id);

  PutWaiter p = Batch({"a"}, "p", 1);  // a new sequence, an old dedup id
  const PutWaiter::Resolution& r = index.Resolve(p, t0);
  EXPECT_EQ(r.duplicates, (Pairs{{0, 1}}));
  EXPECT_EQ(r.count, 0u);
  EXPECT_EQ(r.keys, 0u);
  const uint64_t before = index.bytes();
  Admit(index, p, t0, next_id);
  EXPECT_EQ(index.bytes(), before);
}

TEST(IdempotencyIndexTest, AProducersCopyWithinItsBatchCostsNoKeyBytes) {
  IdempotencyIndex index(Limits());
  uint64_t next_id = 1;
  PutWaiter p = Batch({"x", "x"}, "p", 1);
  const uint64_t keys = index.Resolve(p, t0).keys;
  const uint64_t before = index.bytes();
  Admit(index, p, t0, next_id);
  EXPECT_EQ(index.bytes() - before, kIdBytes + IdempotencyIndex::DedupBytes(1));
  EXPECT_EQ(keys, kIdBytes + IdempotencyIndex::DedupBytes(1));
}

TEST(IdempotencyIndexTest, AResolutionIsKeptOnThePutterUntilTheIndexForgetsKeys) {
  IdempotencyIndex index(Limits());
  uint64_t next_id = 1;
  PutWaiter waiting = Batch({"a"});
  EXPECT_EQ(index.Resolve(waiting, t0).count, 1u);

  PutWaiter other = Batch({"a"});
  Admit(index, other, t0, next_id);
  // Reused as it was: a waiting batch pays for the pass once.
  const PutWaiter::Resolution& kept = index.Resolve(waiting, t0);
  EXPECT_EQ(kept.count, 1u);
  EXPECT_TRUE(kept.duplicates.empty());

  index.Forget(PutKeys{});  // forgetting anything starts a new epoch
  const PutWaiter::Resolution& fresh = index.Resolve(waiting, t0);
  EXPECT_EQ(fresh.count, 0u);
  EXPECT_EQ(fresh.duplicates, (Pairs{{0, 1}}));
}

TEST(IdempotencyIndexTest, ForgottenPutsAreNewWorkAgainAndOnlyThose) {
  IdempotencyIndex index(Limits());
  uint64_t next_id = 1;
  PutWaiter first = Batch({"a", "b", ""}, "p", 1);
  PutKeys keys;
  Admit(index, first, t0, next_id, &keys);
  ASSERT_EQ(keys.sequences.size(), 3u);

  // The write of "a" (sequence 1) failed; the others stay remembered.
  PutKeys failed;
  failed.dedup_ids = {{"a", 1}};
  failed.producer = "p";
  failed.sequences = {{1, 1}};
  index.Forget(failed);

  PutWaiter resend = Batch({"a", "b", ""}, "p", 1);
  const PutWaiter::Resolution& r = index.Resolve(resend, t0 + seconds(1));
  EXPECT_EQ(r.duplicates, (Pairs{{1, 2}, {2, 3}}));
  EXPECT_EQ(r.count, 1u);
  EXPECT_EQ(Admit(index, resend, t0 + seconds(1), next_id), (std::vector<size_t>{0}));
  EXPECT_EQ(resend.results[0].message_id, 4u);

  // Without the producer, "a" is now a duplicate of the resend.
  PutWaiter again = Batch({"a"});
  EXPECT_EQ(index.Resolve(again, t0 + seconds(2)).duplicates, (Pairs{{0, 4}}));
}

TEST(IdempotencyIndexTest, ForgetLeavesAKeyThatWasRecordedAgainSince) {
  IdempotencyIndex index(Limits());
  uint64_t next_id = 1;
  PutWaiter first = Batch({"a"}, "p", 1);
  PutKeys keys;
  Admit(index, first, t0, next_id, &keys);
  index.Forget(keys);
  PutWaiter resend = Batch({"a"}, "p", 1);
  Admit(index, resend, t0 + seconds(1), next_id);  // id 2
  // A late Forget of the first put must not forget the resend.
  index.Forget(keys);
  PutWaiter by_dedup = Batch({"a"});
  EXPECT_EQ(index.Resolve(by_dedup, t0 + seconds(2)).duplicates, (Pairs{{0, 2}}));
  PutWaiter by_sequence = Batch({""}, "p", 1);
  EXPECT_EQ(index.Resolve(by_sequence, t0 + seconds(2)).duplicates, (Pairs{{0, 2}}));
}

TEST(IdempotencyIndexTest, AForgottenDedupIdKeepsItsBytesUntilItAgesOut) {
  IdempotencyIndex index(Limits());
  uint64_t next_id = 1;
  PutWaiter first = Batch({"abcd"});
  PutKeys keys;
  Admit(index, first, t0, next_id, &keys);
  EXPECT_EQ(index.bytes(), IdempotencyIndex::DedupBytes(4));
  index.Forget(keys);
  EXPECT_EQ(index.bytes(), IdempotencyIndex::DedupBytes(4));
  EXPECT_EQ(index.next_expiry(), t0 + kWindow + Duration(1));
  index.Expire(t0 + kWindow + Duration(1));
  EXPECT_EQ(index.bytes(), 0u);
  EXPECT_EQ(index.next_expiry(), kNever);
}

TEST(IdempotencyIndexTest, ExpireForgetsDedupIdsOlderThanTheWindowAndTheirBytes) {
  IdempotencyIndex index(Limits());
  uint64_t next_id = 1;
  EXPECT_EQ(index.next_expiry(), kNever);
  PutWaiter a = Batch({"a"});
  Admit(index, a, t0, next_id);
  PutWaiter b = Batch({"bb"});
  Admit(index, b, t0 + seconds(10), next_id);
  EXPECT_EQ(index.bytes(), IdempotencyIndex::DedupBytes(1) + IdempotencyIndex::DedupBytes(2));
  EXPECT_EQ(index.next_expiry(), t0 + kWindow + Duration(1));

  index.Expire(t0 + kWindow);  // exactly the window old: kept
  EXPECT_EQ(index.bytes(), IdempotencyIndex::DedupBytes(1) + IdempotencyIndex::DedupBytes(2));
  index.Expire(t0 + kWindow + Duration(1));
  EXPECT_EQ(index.bytes(), IdempotencyIndex::DedupBytes(2));
  EXPECT_EQ(index.next_expiry(), t0 + seconds(10) + kWindow + Duration(1));
  PutWaiter resend = Batch({"a", "bb"});
  EXPECT_EQ(index.Resolve(resend, t0 + kWindow + Duration(1)).duplicates, (Pairs{{1, 2}}));

  index.Expire(t0 + seconds(10) + kWindow + Duration(1));
  EXPECT_EQ(index.bytes(), 0u);
  EXPECT_EQ(index.next_expiry(), kNever);
}

TEST(IdempotencyIndexTest, MaxDedupIdsForgetsTheOldestFirst) {
  IdempotencyIndex index(Limits(2));
  uint64_t next_id = 1;
  PutWaiter p = Batch({"a", "b", "c"});
  Admit(index, p, t0, next_id);
  EXPECT_EQ(index.bytes(), 2 * IdempotencyIndex::DedupBytes(1));
  PutWaiter resend = Batch({"a", "b", "c"});
  const PutWaiter::Resolution& r = index.Resolve(resend, t0 + seconds(1));
  EXPECT_EQ(r.duplicates, (Pairs{{1, 2}, {2, 3}}));
  EXPECT_EQ(r.count, 1u);
  // "a" again pushes out "b".
  Admit(index, resend, t0 + seconds(1), next_id);
  EXPECT_EQ(index.bytes(), 2 * IdempotencyIndex::DedupBytes(1));
  PutWaiter third = Batch({"a", "b", "c"});
  EXPECT_EQ(index.Resolve(third, t0 + seconds(2)).duplicates, (Pairs{{0, 4}, {2, 3}}));
}

TEST(IdempotencyIndexTest, RestoredKeysAreRememberedFromNowOn) {
  IdempotencyIndex index(Limits());
  PutKeys keys;
  keys.dedup_ids = {{"a", 5}};
  keys.producer = "p";
  keys.sequences = {{1, 6}, {2, 7}};
  const TimePoint restart = t0 + std::chrono::hours(5);
  index.Restore(keys, restart);
  EXPECT_EQ(index.bytes(),
            IdempotencyIndex::DedupBytes(1) + ProducerSequences::RecordBytes("p") + 2 * kIdBytes);
  EXPECT_EQ(index.next_expiry(), restart + kWindow + Duration(1));

  PutWaiter by_dedup = Batch({"a"});
  EXPECT_EQ(index.Resolve(by_dedup, restart + kWindow).duplicates, (Pairs{{0, 5}}));
  PutWaiter by_sequence = Batch({"", "", ""}, "p", 1);
  const PutWaiter::Resolution& r = index.Resolve(by_sequence, restart + kWindow);
  EXPECT_EQ(r.duplicates, (Pairs{{0, 6}, {1, 7}}));
  EXPECT_EQ(r.count, 1u);
}

TEST(IdempotencyIndexTest, RestoreSkipsKeysLongerThanTheLimitAndProducersBeyondTheCap) {
  IdempotencyIndex index(Limits(1000, 1));
  PutKeys too_long;
  too_long.dedup_ids = {{std::string(kMaxDedupIdBytes + 1, 'd'), 1}};
  too_long.producer = std::string(kMaxDedupIdBytes + 1, 'p');
  too_long.sequences = {{1, 1}};
  index.Restore(too_long, t0);
  EXPECT_EQ(index.bytes(), 0u);

  PutKeys longest;
  longest.dedup_ids = {{std::string(kMaxDedupIdBytes, 'd'), 2}};
  longest.producer = std::string(kMaxDedupIdBytes, 'p');
  longest.sequences = {{1, 2}};
  index.Restore(longest, t0);
  const uint64_t kept = IdempotencyIndex::DedupBytes(kMaxDedupIdBytes) +
                        ProducerSequences::RecordBytes(longest.producer) + kIdBytes;
  EXPECT_EQ(index.bytes(), kept);

  PutKeys second;  // max_producers is 1
  second.producer = "q";
  second.sequences = {{1, 3}};
  index.Restore(second, t0);
  EXPECT_EQ(index.bytes(), kept);
}

}  // namespace
}  // namespace basin::core
