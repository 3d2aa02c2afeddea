// PendingPuts alone: a durable queue's admitted batches, numbered, settled
// strictly in admission order whatever order the journal answers in.
#include "broker/core/pending_puts.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace basin::core {
namespace {

// A batch of `n` messages with ids from `first_id`, accounted as `bytes`.
PendingBatch Batch(size_t n, uint64_t bytes, uint64_t first_id = 1) {
  PendingBatch b;
  for (size_t i = 0; i < n; ++i) b.msgs.push_back(Message::Make(first_id + i, "payload", {}));
  b.bytes = bytes;
  b.room_count = n;
  b.room_bytes = bytes;
  return b;
}

std::vector<uint64_t> Seqs(const std::vector<PendingBatch>& batches) {
  std::vector<uint64_t> out;
  for (const PendingBatch& b : batches) out.push_back(b.seq);
  return out;
}

TEST(PendingPutsTest, AnEmptyPipelineHasNothingPendingAndNumbersFromOne) {
  PendingPuts p;
  EXPECT_TRUE(p.empty());
  EXPECT_EQ(p.room_count(), 0u);
  EXPECT_EQ(p.bytes(), 0u);
  EXPECT_EQ(p.next_seq(), 1u);
  EXPECT_TRUE(p.Resolve(1, std::nullopt).empty());
  EXPECT_TRUE(p.TakeAll().empty());
  EXPECT_EQ(p.next_seq(), 1u);
}

TEST(PendingPutsTest, AdmitNumbersBatchesInOrderAndCountsTheirMessagesAndBytes) {
  PendingPuts p;
  EXPECT_EQ(p.Admit(Batch(2, 30)), 1u);
  EXPECT_EQ(p.next_seq(), 2u);
  EXPECT_EQ(p.Admit(Batch(3, 45)), 2u);
  EXPECT_EQ(p.Admit(Batch(0, 0)), 3u);  // all duplicates: nothing to count
  EXPECT_EQ(p.next_seq(), 4u);
  EXPECT_FALSE(p.empty());
  EXPECT_EQ(p.room_count(), 5u);
  EXPECT_EQ(p.bytes(), 75u);
}

TEST(PendingPutsTest, AdmitIgnoresTheNumberTheBatchCameWith) {
  PendingPuts p;
  PendingBatch b = Batch(1, 10);
  b.seq = 42;
  EXPECT_EQ(p.Admit(std::move(b)), 1u);
  std::vector<PendingBatch> settled = p.Resolve(1, std::nullopt);
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_EQ(settled[0].seq, 1u);
  EXPECT_TRUE(p.Resolve(42, std::nullopt).empty());
}

TEST(PendingPutsTest, BatchesSettleInAdmissionOrderWhateverOrderTheJournalAnswersIn) {
  PendingPuts p;
  p.Admit(Batch(1, 10, 1));
  p.Admit(Batch(2, 20, 2));
  p.Admit(Batch(3, 30, 4));
  p.Admit(Batch(4, 40, 7));

  EXPECT_TRUE(p.Resolve(3, std::nullopt).empty());
  EXPECT_TRUE(p.Resolve(2, std::nullopt).empty());
  EXPECT_EQ(p.room_count(), 10u);  // nothing settled yet
  EXPECT_EQ(p.bytes(), 100u);

  std::vector<PendingBatch> settled = p.Resolve(1, std::nullopt);
  EXPECT_EQ(Seqs(settled), (std::vector<uint64_t>{1, 2, 3}));
  for (const PendingBatch& b : settled) {
    EXPECT_TRUE(b.resolved);
    EXPECT_FALSE(b.error.has_value());
  }
  // Their messages come back in order, ids and all.
  std::vector<uint64_t> ids;
  for (const PendingBatch& b : settled) {
    for (const MessagePtr& m : b.msgs) ids.push_back(m->id());
  }
  EXPECT_EQ(ids, (std::vector<uint64_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(p.room_count(), 4u);
  EXPECT_EQ(p.bytes(), 40u);
  EXPECT_FALSE(p.empty());

  EXPECT_EQ(Seqs(p.Resolve(4, std::nullopt)), (std::vector<uint64_t>{4}));
  EXPECT_TRUE(p.empty());
  EXPECT_EQ(p.room_count(), 0u);
  EXPECT_EQ(p.bytes(), 0u);
  EXPECT_EQ(p.next_seq(), 5u);
}

TEST(PendingPutsTest, TheOldestBatchSettlesAtOnceWhenItIsAnsweredFirst) {
  PendingPuts p;
  p.Admit(Batch(1, 10));
  p.Admit(Batch(1, 10));
  EXPECT_EQ(Seqs(p.Resolve(1, std::nullopt)), (std::vector<uint64_t>{1}));
  EXPECT_EQ(p.room_count(), 1u);
  EXPECT_EQ(p.bytes(), 10u);
}

TEST(PendingPutsTest, AFailedWriteSettlesInItsTurnWithItsError) {
  PendingPuts p;
  p.Admit(Batch(1, 10));
  p.Admit(Batch(1, 10));
  p.Admit(Batch(1, 10));
  EXPECT_TRUE(p.Resolve(2, Error{Errc::kStorageUnavailable, "disk full"}).empty());
  EXPECT_EQ(p.room_count(), 3u);
  std::vector<PendingBatch> settled = p.Resolve(1, std::nullopt);
  ASSERT_EQ(Seqs(settled), (std::vector<uint64_t>{1, 2}));
  EXPECT_FALSE(settled[0].error.has_value());
  ASSERT_TRUE(settled[1].error.has_value());
  EXPECT_EQ(settled[1].error->code, Errc::kStorageUnavailable);
  EXPECT_EQ(settled[1].error->message, "disk full");
  // A failed batch's messages are counted out like any other.
  EXPECT_EQ(p.room_count(), 1u);
  EXPECT_EQ(p.bytes(), 10u);
}

TEST(PendingPutsTest, UnknownNumbersAreIgnored) {
  PendingPuts p;
  p.Admit(Batch(1, 10));
  p.Admit(Batch(2, 20));
  EXPECT_TRUE(p.Resolve(0, std::nullopt).empty());
  EXPECT_TRUE(p.Resolve(3, std::nullopt).empty());
  EXPECT_TRUE(p.Resolve(UINT64_MAX, Error{Errc::kStorageUnavailable, "x"}).empty());
  EXPECT_EQ(p.room_count(), 3u);
  EXPECT_EQ(p.bytes(), 30u);

  // A number already settled is unknown too, and touches nothing.
  EXPECT_EQ(Seqs(p.Resolve(1, std::nullopt)), (std::vector<uint64_t>{1}));
  EXPECT_TRUE(p.Resolve(1, Error{Errc::kStorageUnavailable, "late"}).empty());
  EXPECT_EQ(p.room_count(), 2u);
  std::vector<PendingBatch> last = p.Resolve(2, std::nullopt);
  ASSERT_EQ(Seqs(last), (std::vector<uint64_t>{2}));
  EXPECT_FALSE(last[0].error.has_value());
}

TEST(PendingPutsTest, TakeAllHandsBackEveryBatchInOrderAndTheCountersReturnToZero) {
  PendingPuts p;
  p.Admit(Batch(1, 10));
  p.Admit(Batch(2, 20));
  p.Admit(Batch(3, 30));
  p.Resolve(2, std::nullopt);  // answered but waiting for 1

  std::vector<PendingBatch> all = p.TakeAll();
  EXPECT_EQ(Seqs(all), (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_FALSE(all[0].resolved);
  EXPECT_TRUE(all[1].resolved);
  EXPECT_FALSE(all[2].resolved);
  EXPECT_EQ(all[2].msgs.size(), 3u);
  EXPECT_TRUE(p.empty());
  EXPECT_EQ(p.room_count(), 0u);
  EXPECT_EQ(p.bytes(), 0u);
  EXPECT_TRUE(p.TakeAll().empty());
}

TEST(PendingPutsTest, NumberingGoesOnAfterTakeAllAndOldNumbersAreIgnored) {
  PendingPuts p;
  p.Admit(Batch(1, 10));
  p.Admit(Batch(1, 10));
  p.TakeAll();
  EXPECT_EQ(p.next_seq(), 3u);
  // The journal answers the emptied batches late.
  EXPECT_TRUE(p.Resolve(1, std::nullopt).empty());
  EXPECT_TRUE(p.Resolve(2, std::nullopt).empty());

  EXPECT_EQ(p.Admit(Batch(2, 25)), 3u);
  EXPECT_EQ(p.Admit(Batch(1, 5)), 4u);
  EXPECT_TRUE(p.Resolve(2, std::nullopt).empty());
  EXPECT_EQ(p.room_count(), 3u);
  EXPECT_EQ(p.bytes(), 30u);
  EXPECT_TRUE(p.Resolve(4, std::nullopt).empty());
  EXPECT_EQ(Seqs(p.Resolve(3, std::nullopt)), (std::vector<uint64_t>{3, 4}));
  EXPECT_TRUE(p.empty());
}

TEST(PendingPutsTest, ASettledBatchCarriesWhatItWasAdmittedWith) {
  PendingPuts p;
  std::optional<Result<std::vector<PutResult>>> answered;
  PendingBatch b = Batch(1, 7, 9);
  b.cb = [&](Result<std::vector<PutResult>> r) { answered = std::move(r); };
  b.results.resize(2);
  b.results[0].message_id = 9;
  b.results[1].message_id = 3;
  b.results[1].duplicate = true;
  b.keys.dedup_ids = {{"d", 9}};
  b.keys.producer = "prod";
  b.keys.sequences = {{4, 9}};
  p.Admit(std::move(b));

  std::vector<PendingBatch> settled = p.Resolve(1, std::nullopt);
  ASSERT_EQ(settled.size(), 1u);
  PendingBatch& s = settled[0];
  ASSERT_EQ(s.msgs.size(), 1u);
  EXPECT_EQ(s.msgs[0]->id(), 9u);
  EXPECT_EQ(s.msgs[0]->payload(), "payload");
  EXPECT_EQ(s.bytes, 7u);
  ASSERT_EQ(s.results.size(), 2u);
  EXPECT_EQ(s.results[1].message_id, 3u);
  EXPECT_TRUE(s.results[1].duplicate);
  EXPECT_EQ(s.keys.dedup_ids, (std::vector<std::pair<std::string, uint64_t>>{{"d", 9}}));
  EXPECT_EQ(s.keys.producer, "prod");
  EXPECT_EQ(s.keys.sequences, (std::vector<std::pair<uint64_t, uint64_t>>{{4, 9}}));
  ASSERT_TRUE(s.cb);
  EXPECT_FALSE(answered.has_value());  // the queue answers it, after its lock
  s.cb(std::move(s.results));
  ASSERT_TRUE(answered.has_value());
  ASSERT_TRUE(answered->ok());
  EXPECT_EQ(answered->value().size(), 2u);
}

TEST(PendingPutsTest, ABatchWithoutACallbackSettlesLikeAnyOther) {
  PendingPuts p;
  p.Admit(Batch(1, 10));  // a dead letter or a routed copy: no one to answer
  std::vector<PendingBatch> settled = p.Resolve(1, Error{Errc::kStorageUnavailable, "io"});
  ASSERT_EQ(settled.size(), 1u);
  EXPECT_FALSE(settled[0].cb);
  ASSERT_TRUE(settled[0].error.has_value());
  EXPECT_EQ(settled[0].error->code, Errc::kStorageUnavailable);
  EXPECT_TRUE(p.empty());
}

}  // namespace
}  // namespace basin::core
