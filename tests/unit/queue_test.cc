// Core queue semantics, with time passed in by hand: no sleeps, no gRPC.
#include "broker/core/queue.h"

#include <gtest/gtest.h>

#include <optional>
#include <random>
#include <string>
#include <vector>

#include "broker/core/broker.h"
#include "unit/queue_fixture.h"

namespace basin::core {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST_F(QueueTest, DeliversInFifoOrderWithRisingIds) {
  auto q = Make("fifo");
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Put(*q, "m" + std::to_string(i)).result->value(), i + 1u);
  for (int i = 0; i < 5; ++i) {
    Delivery d = MustGet(*q);
    EXPECT_EQ(d.payload, "m" + std::to_string(i));
    EXPECT_EQ(d.message_id, i + 1u);
    EXPECT_EQ(d.delivery_count, 1u);
  }
  ExpectConserved();
}

TEST_F(QueueTest, NowaitPutOnFullQueueFails) {
  auto q = Make("bounded", 2);
  EXPECT_TRUE(Put(*q, "a").ok());
  EXPECT_TRUE(Put(*q, "b").ok());
  auto& third = Put(*q, "c");
  ASSERT_TRUE(third.done());
  EXPECT_EQ(third.code(), Errc::kQueueFull);
  EXPECT_NE(third.result->error().message.find("max_size 2"), std::string::npos);
  EXPECT_TRUE(q->Stats().full);
}

TEST_F(QueueTest, BlockedPutIsAdmittedWhenAGetFreesRoom) {
  auto q = Make("bounded", 1);
  Put(*q, "a");
  auto& blocked = Put(*q, "b", seconds(5));
  EXPECT_FALSE(blocked.done());
  EXPECT_EQ(q->Stats().waiting_putters, 1u);
  EXPECT_EQ(MustGet(*q).payload, "a");
  ASSERT_TRUE(blocked.ok());
  EXPECT_EQ(blocked.result->value(), 2u);
  EXPECT_EQ(q->Stats().size, 1u);
  ExpectConserved();
}

TEST_F(QueueTest, BlockedPutTimesOutAsFull) {
  auto q = Make("bounded", 1);
  Put(*q, "a");
  auto& blocked = Put(*q, "b", seconds(2));
  Advance(*q, seconds(1));
  EXPECT_FALSE(blocked.done());
  Advance(*q, seconds(1));
  ASSERT_TRUE(blocked.done());
  EXPECT_EQ(blocked.code(), Errc::kQueueFull);
  EXPECT_EQ(q->Stats().size, 1u);
}

TEST_F(QueueTest, GetTimesOutWhenEmpty) {
  auto q = Make("empty");
  EXPECT_EQ(Get(*q).code(), Errc::kQueueEmpty);
  auto& blocked = Get(*q, seconds(3));
  EXPECT_FALSE(blocked.done());
  Advance(*q, milliseconds(2999));
  EXPECT_FALSE(blocked.done());
  Advance(*q, milliseconds(1));
  EXPECT_EQ(blocked.code(), Errc::kQueueEmpty);
  EXPECT_EQ(q->Stats().waiting_getters, 0u);
}

TEST_F(QueueTest, BlockedGettersAreServedFirstComeFirstServed) {
  auto q = Make("order");
  std::vector<Outcome<Delivery>*> waiting;
  for (int i = 0; i < 3; ++i) waiting.push_back(&Get(*q, seconds(10)));
  for (int i = 0; i < 3; ++i) Put(*q, "m" + std::to_string(i));
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(waiting[i]->ok());
    EXPECT_EQ(waiting[i]->result->value().payload, "m" + std::to_string(i));
  }
}

TEST_F(QueueTest, BlockedPuttersAreAdmittedInOrder) {
  auto q = Make("order", 1);
  Put(*q, "first");
  auto& a = Put(*q, "a", seconds(10));
  auto& b = Put(*q, "b", seconds(10));
  // A nowait put must not jump the queue of blocked putters.
  EXPECT_EQ(Put(*q, "c").code(), Errc::kQueueFull);
  MustGet(*q);
  EXPECT_TRUE(a.ok());
  EXPECT_FALSE(b.done());
  EXPECT_EQ(MustGet(*q).payload, "a");
  EXPECT_TRUE(b.ok());
}

TEST_F(QueueTest, CancelRemovesAWaiterAndCallsBackOnce) {
  auto q = Make("cancel");
  auto& g = Get(*q, seconds(10));
  const WaitId id = last_wait_;
  ASSERT_NE(id, 0u);
  q->Cancel(id);
  ASSERT_TRUE(g.done());
  EXPECT_EQ(g.code(), Errc::kCancelled);
  q->Cancel(id);  // a second cancel is a no-op
  Put(*q, "m");   // nothing is handed to the cancelled getter
  EXPECT_EQ(q->Stats().size, 1u);
  EXPECT_EQ(q->Stats().waiting_getters, 0u);
}

TEST_F(QueueTest, TooManyWaitersIsRefused) {
  auto q = Make("crowded");
  for (int i = 0; i < 8; ++i) EXPECT_FALSE(Get(*q, seconds(10)).done());
  auto& refused = Get(*q, seconds(10));
  ASSERT_TRUE(refused.done());
  EXPECT_EQ(refused.code(), Errc::kTooManyWaiters);
  // Nowait calls are never refused for crowding.
  EXPECT_EQ(Get(*q).code(), Errc::kQueueEmpty);
}

TEST_F(QueueTest, TaskDoneAndJoin) {
  auto q = Make("join");
  EXPECT_TRUE(Join(*q).ok());  // nothing unfinished
  Put(*q, "a");
  Put(*q, "b");
  auto& joiner = Join(*q, seconds(10));
  EXPECT_FALSE(joiner.done());
  Delivery a = MustGet(*q);
  Delivery b = MustGet(*q);
  EXPECT_EQ(q->Stats().unfinished, 2u);
  ExpectConserved();
  EXPECT_TRUE(q->TaskDone(a.tag, now_).ok());
  EXPECT_FALSE(joiner.done());
  EXPECT_TRUE(q->TaskDone(b.tag, now_).ok());
  EXPECT_TRUE(joiner.ok());
  const QueueStats s = q->Stats();
  EXPECT_EQ(s.unfinished, 0u);
  EXPECT_EQ(s.total_done, 2u);
}

TEST_F(QueueTest, JoinTimesOut) {
  auto q = Make("join");
  Put(*q, "a");
  auto& joiner = Join(*q, seconds(1));
  Advance(*q, seconds(1));
  EXPECT_EQ(joiner.code(), Errc::kJoinTimeout);
}

TEST_F(QueueTest, StaleTagsAreRejectedWithTheirReason) {
  auto q = Make("tags");
  Put(*q, "a");
  Delivery d = MustGet(*q);
  EXPECT_TRUE(q->TaskDone(d.tag, now_).ok());
  EXPECT_EQ(q->TaskDone(d.tag, now_).error().code, Errc::kAlreadyDone);
  EXPECT_EQ(q->TaskDone("not-a-tag", now_).error().code, Errc::kInvalidDeliveryTag);
  EXPECT_EQ(q->TaskDone("1.1", now_).error().code, Errc::kUnknownDelivery);
  // A tag of this incarnation that was never issued.
  const std::string unissued = d.tag.substr(0, d.tag.find('.')) + ".999";
  EXPECT_EQ(q->TaskDone(unissued, now_).error().code, Errc::kUnknownDelivery);

  Put(*q, "b");
  Delivery e = MustGet(*q);
  Advance(*q, seconds(11));  // lease expired
  EXPECT_EQ(q->TaskDone(e.tag, now_).error().code, Errc::kLeaseExpired);
  EXPECT_EQ(q->ExtendLease(e.tag, seconds(5), now_).error().code, Errc::kLeaseExpired);
  EXPECT_EQ(q->Release(e.tag, now_).error().code, Errc::kLeaseExpired);
}

TEST_F(QueueTest, TagFromADeletedAndRecreatedQueueIsUnknown) {
  auto q = Make("phoenix");
  Put(*q, "a");
  Delivery d = MustGet(*q);
  ASSERT_TRUE(broker_.DeleteQueue("phoenix").ok());
  auto again = Make("phoenix");
  Put(*again, "b");
  MustGet(*again);
  EXPECT_EQ(again->TaskDone(d.tag, now_).error().code, Errc::kUnknownDelivery);
  EXPECT_EQ(again->Stats().in_flight, 1u);
}

TEST_F(QueueTest, ExpiredLeaseGoesBackToTheHeadWithDeliveryCountPlusOne) {
  auto q = Make("lease");
  Put(*q, "a");
  Put(*q, "b");
  Delivery a = MustGet(*q);
  Advance(*q, seconds(9));
  EXPECT_EQ(q->Stats().in_flight, 1u);
  Advance(*q, seconds(1));
  QueueStats s = q->Stats();
  EXPECT_EQ(s.in_flight, 0u);
  EXPECT_EQ(s.size, 2u);
  EXPECT_EQ(s.total_redelivered, 1u);
  ExpectConserved();
  Delivery again = MustGet(*q);
  EXPECT_EQ(again.payload, "a");
  EXPECT_EQ(again.message_id, a.message_id);
  EXPECT_EQ(again.delivery_count, 2u);
}

TEST_F(QueueTest, LeasesExpiringTogetherKeepTheirOrder) {
  auto q = Make("lease");
  for (const char* p : {"a", "b", "c", "d"}) Put(*q, p);
  MustGet(*q);
  MustGet(*q);
  MustGet(*q);
  Advance(*q, seconds(10));  // a, b and c expire in one pass
  EXPECT_EQ(MustGet(*q).payload, "a");
  EXPECT_EQ(MustGet(*q).payload, "b");
  EXPECT_EQ(MustGet(*q).payload, "c");
  EXPECT_EQ(MustGet(*q).payload, "d");
}

TEST_F(QueueTest, ExtendLeaseMovesExpiryAndIsCapped) {
  auto q = Make("lease");
  Put(*q, "a");
  Delivery a = MustGet(*q);
  Advance(*q, seconds(8));
  auto granted = q->ExtendLease(a.tag, seconds(20), now_);
  ASSERT_TRUE(granted.ok());
  EXPECT_EQ(granted.value(), seconds(20));
  Advance(*q, seconds(19));
  EXPECT_EQ(q->Stats().in_flight, 1u);
  Advance(*q, seconds(1));
  EXPECT_EQ(q->Stats().in_flight, 0u);

  Delivery b = MustGet(*q);
  auto capped = q->ExtendLease(b.tag, std::chrono::hours(100), now_);
  EXPECT_EQ(capped.value(), std::chrono::hours(1));
  EXPECT_EQ(q->ExtendLease(b.tag, seconds(0), now_).error().code, Errc::kInvalidTimeout);
}

TEST_F(QueueTest, GetMayOverrideTheVisibilityTimeout) {
  auto q = Make("lease");
  Put(*q, "a");
  auto& g = Get(*q, {}, seconds(2));
  EXPECT_EQ(g.result->value().lease, seconds(2));
  Advance(*q, seconds(2));
  EXPECT_EQ(q->Stats().size, 1u);
}

TEST_F(QueueTest, ReleaseRequeuesAtTheHeadAtOnce) {
  auto q = Make("nack");
  Put(*q, "a");
  Put(*q, "b");
  Delivery a = MustGet(*q);
  auto released = q->Release(a.tag, now_);
  ASSERT_TRUE(released.ok());
  EXPECT_FALSE(released.value().dead_lettered);
  Delivery again = MustGet(*q);
  EXPECT_EQ(again.payload, "a");
  EXPECT_EQ(again.delivery_count, 2u);
}

TEST_F(QueueTest, RequeueIgnoresTheBound) {
  auto q = Make("bounded", 1);
  Put(*q, "a");
  Delivery a = MustGet(*q);
  Put(*q, "b");
  EXPECT_TRUE(q->Release(a.tag, now_).ok());
  EXPECT_EQ(q->Stats().size, 2u);
  EXPECT_EQ(MustGet(*q).payload, "a");
}

TEST_F(QueueTest, ReleaseWakesABlockedGetter) {
  auto q = Make("nack");
  Put(*q, "a");
  Delivery a = MustGet(*q);
  auto& waiting = Get(*q, seconds(5));
  EXPECT_FALSE(waiting.done());
  q->Release(a.tag, now_);
  ASSERT_TRUE(waiting.ok());
  EXPECT_EQ(waiting.result->value().delivery_count, 2u);
}

TEST_F(QueueTest, DeadLettersAfterMaxDeliveries) {
  auto dlq = Make("dlq");
  QueueConfig c;
  c.name = "work";
  c.visibility_timeout = seconds(5);
  c.max_deliveries = 2;
  c.dead_letter_queue = "dlq";
  auto q = Make(c);
  Put(*q, "poison", {}, {{"app", "x"}});
  Delivery first = MustGet(*q);
  EXPECT_FALSE(q->Release(first.tag, now_).value().dead_lettered);
  Delivery second = MustGet(*q);
  EXPECT_EQ(second.delivery_count, 2u);
  Advance(*q, seconds(5));  // the second lease expires: limit reached
  QueueStats s = q->Stats();
  EXPECT_EQ(s.size, 0u);
  EXPECT_EQ(s.unfinished, 0u);
  EXPECT_EQ(s.total_dead_lettered, 1u);
  QueueStats d = dlq->Stats();
  EXPECT_EQ(d.size, 1u);
  EXPECT_EQ(d.unfinished, 1u);
  Delivery dead = MustGet(*dlq);
  EXPECT_EQ(dead.payload, "poison");
  EXPECT_EQ(dead.headers.at("app"), "x");
  EXPECT_EQ(dead.headers.at(std::string(kHeaderDeadLetterReason)), "delivery_limit");
  EXPECT_EQ(dead.headers.at(std::string(kHeaderOriginalQueue)), "work");
  EXPECT_EQ(dead.headers.at(std::string(kHeaderOriginalId)), std::to_string(first.message_id));
  EXPECT_EQ(dead.delivery_count, 1u);
}

TEST_F(QueueTest, DeadLetterIgnoresTheDlqBoundAndClosedState) {
  auto dlq = Make("dlq", 1);
  Put(*dlq, "already");
  dlq->Close(now_);
  QueueConfig c;
  c.name = "work";
  c.max_deliveries = 1;
  c.dead_letter_queue = "dlq";
  auto q = Make(c);
  Put(*q, "poison");
  Delivery d = MustGet(*q);
  EXPECT_TRUE(q->Release(d.tag, now_).value().dead_lettered);
  EXPECT_EQ(dlq->Stats().size, 2u);
}

TEST_F(QueueTest, MaxDeliveriesWithoutDlqDropsTheMessage) {
  QueueConfig c;
  c.name = "work";
  c.max_deliveries = 1;
  auto q = Make(c);
  Put(*q, "poison");
  Delivery d = MustGet(*q);
  EXPECT_TRUE(q->Release(d.tag, now_).value().dead_lettered);
  EXPECT_EQ(q->Stats().unfinished, 0u);
  EXPECT_EQ(q->Stats().total_dead_lettered, 1u);
}

TEST_F(QueueTest, CloseFailsPutsAndDrainsGetters) {
  auto q = Make("eos", 1);
  Put(*q, "a");
  auto& blocked_put = Put(*q, "b", seconds(10));
  EXPECT_FALSE(q->Close(now_));
  EXPECT_TRUE(q->Close(now_));  // idempotent
  EXPECT_EQ(blocked_put.code(), Errc::kQueueClosed);
  EXPECT_EQ(Put(*q, "c").code(), Errc::kQueueClosed);
  EXPECT_EQ(q->Stats().total_put, 1u);

  Delivery a = MustGet(*q);  // what is left is still served
  // Not drained while a lease is out: a getter waits, the lease may come back.
  auto& waiting = Get(*q, seconds(60));
  auto& joiner = Join(*q, seconds(60));
  EXPECT_FALSE(waiting.done());
  Advance(*q, seconds(10));  // the lease expires: "a" is back and goes to the waiter
  ASSERT_TRUE(waiting.ok());
  Delivery again = waiting.result->value();
  EXPECT_EQ(again.payload, "a");
  auto& second_wait = Get(*q, seconds(60));
  EXPECT_FALSE(second_wait.done());
  EXPECT_FALSE(joiner.done());
  EXPECT_TRUE(q->TaskDone(again.tag, now_).ok());
  EXPECT_EQ(second_wait.code(), Errc::kQueueDrained);
  EXPECT_TRUE(joiner.ok());
  EXPECT_EQ(Get(*q, seconds(60)).code(), Errc::kQueueDrained);
  (void)a;
}

TEST_F(QueueTest, DeleteEndsWaitersAndDropsMessages) {
  auto q = Make("gone");
  Put(*q, "a");
  Put(*q, "b");
  MustGet(*q);
  auto& joiner = Join(*q, seconds(10));
  auto r = broker_.DeleteQueue("gone");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(), 2u);
  EXPECT_EQ(joiner.code(), Errc::kQueueDeleted);
  EXPECT_EQ(Put(*q, "c").code(), Errc::kQueueDeleted);
  EXPECT_EQ(Get(*q, seconds(1)).code(), Errc::kQueueDeleted);
  EXPECT_EQ(broker_.FindQueue("gone").error().code, Errc::kQueueNotFound);
  EXPECT_EQ(broker_.memory().used(), 0u);
}

TEST_F(QueueTest, ShutdownEndsEveryWaiter) {
  auto q = Make("stop", 1);
  Put(*q, "a");
  auto& put = Put(*q, "b", seconds(10));
  auto& join = Join(*q, seconds(10));
  auto other = Make("stop2");
  auto& get = Get(*other, seconds(10));
  broker_.Shutdown();
  EXPECT_EQ(put.code(), Errc::kShutdown);
  EXPECT_EQ(join.code(), Errc::kShutdown);
  EXPECT_EQ(get.code(), Errc::kShutdown);
  EXPECT_EQ(Get(*other, seconds(10)).code(), Errc::kShutdown);
}

// Draining (SIGTERM): no new work, even what would not wait, while work in
// hand can still be finished.
TEST_F(QueueTest, AfterShutdownPutsAndGetsAreRefusedButTaskDoneIsTaken) {
  auto q = Make("drain");
  Put(*q, "a");
  Put(*q, "b");
  const Delivery held = MustGet(*q);
  broker_.Shutdown();
  EXPECT_EQ(Put(*q, "c").code(), Errc::kShutdown);
  EXPECT_EQ(Get(*q).code(), Errc::kShutdown);  // "b" is ready, and stays
  EXPECT_EQ(q->Offer("routed", {}, now_, nullptr).error().code, Errc::kShutdown);
  EXPECT_TRUE(q->TaskDone(held.tag, now_).ok());
  const QueueStats s = q->Stats();
  EXPECT_EQ(s.size, 1u);
  EXPECT_EQ(s.total_put, 2u);
  EXPECT_EQ(s.total_done, 1u);
  ExpectConserved();
}

TEST_F(QueueTest, OversizeAndReservedHeadersAreRefused) {
  auto q = Make("limits");
  EXPECT_EQ(Put(*q, std::string(1025, 'x')).code(), Errc::kMessageTooLarge);
  EXPECT_TRUE(Put(*q, std::string(1024, 'x')).ok());
  EXPECT_EQ(Put(*q, "m", {}, {{"basin-topic", "x"}}).code(), Errc::kReservedHeader);
  EXPECT_EQ(q->Stats().total_put, 1u);
}

TEST_F(QueueTest, MaxBytesBoundsReadyBytes) {
  QueueConfig c;
  c.name = "bytes";
  c.max_bytes = 10;
  auto q = Make(c);
  EXPECT_TRUE(Put(*q, "12345").ok());
  EXPECT_TRUE(Put(*q, "12345").ok());
  EXPECT_EQ(Put(*q, "1").code(), Errc::kQueueFull);
  EXPECT_EQ(Put(*q, std::string(11, 'x')).code(), Errc::kMessageTooLarge);
  EXPECT_EQ(q->Stats().bytes, 10u);
}

TEST_F(QueueTest, HeadersRoundTrip) {
  auto q = Make("headers");
  Put(*q, "p", {}, {{"a", "1"}, {"b", ""}, {"", "empty-key"}});
  Delivery d = MustGet(*q);
  EXPECT_EQ(d.headers.size(), 3u);
  EXPECT_EQ(d.headers.at("a"), "1");
  EXPECT_EQ(d.headers.at(""), "empty-key");
}

TEST_F(QueueTest, BatchPutIsAllOrNothing) {
  auto q = Make("batch", 4);
  Put(*q, "x");
  Put(*q, "y");
  std::vector<MessageSpec> three{{"a", nullptr, {}}, {"b", nullptr, {}}, {"c", nullptr, {}}};
  auto full = PutBatchNow(*q, three, now_);
  EXPECT_EQ(full.error().code, Errc::kQueueFull);
  EXPECT_EQ(q->Stats().size, 2u);  // none of the three went in
  std::optional<Result<std::vector<PutResult>>> waiting;
  PutBatchNow(*q, three, now_, seconds(10), &waiting);
  EXPECT_FALSE(waiting.has_value());
  MustGet(*q);  // 1 ready: room for three
  ASSERT_TRUE(waiting.has_value());
  ASSERT_TRUE(waiting->ok());
  EXPECT_EQ(waiting->value()[0].message_id, 3u);
  EXPECT_EQ(waiting->value()[2].message_id, 5u);
  EXPECT_EQ(q->Stats().size, 4u);
  // Five can never fit a queue of four.
  std::vector<MessageSpec> five(5, MessageSpec{"m", nullptr, {}});
  EXPECT_EQ(PutBatchNow(*q, five, now_).error().code, Errc::kInvalidArgument);
}

TEST_F(QueueTest, BatchPutReportsInvalidMessagesOneByOne) {
  auto q = Make("batch");
  const Headers reserved{{"basin-x", "1"}};
  std::vector<MessageSpec> batch{{"ok", nullptr, {}},
                                 {"bad", &reserved, {}},
                                 {std::string(2000, 'x'), nullptr, {}},
                                 {"ok2", nullptr, {}}};
  auto r = PutBatchNow(*q, batch, now_);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value()[0].message_id, 1u);
  EXPECT_EQ(r.value()[1].error->code, Errc::kReservedHeader);
  EXPECT_EQ(r.value()[2].error->code, Errc::kMessageTooLarge);
  EXPECT_EQ(r.value()[3].message_id, 2u);
  EXPECT_EQ(q->Stats().size, 2u);
}

TEST_F(QueueTest, DedupIdsAnswerWithTheOriginalIdWithinTheWindow) {
  auto q = Make("dedup");
  std::vector<MessageSpec> batch{{"a", nullptr, "k1"}, {"b", nullptr, "k2"}, {"a2", nullptr, "k1"}};
  auto first = PutBatchNow(*q, batch, now_);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first.value()[0].message_id, 1u);
  EXPECT_EQ(first.value()[1].message_id, 2u);
  EXPECT_EQ(first.value()[2].message_id, 1u);  // same id twice in one batch
  EXPECT_TRUE(first.value()[2].duplicate);
  EXPECT_EQ(q->Stats().size, 2u);
  // A retry of the whole batch enqueues nothing.
  auto retry = PutBatchNow(*q, batch, now_ + seconds(60));
  EXPECT_TRUE(retry.value()[0].duplicate);
  EXPECT_EQ(retry.value()[1].message_id, 2u);
  EXPECT_EQ(q->Stats().total_put, 2u);
  // After the window the id is forgotten.
  auto later = PutBatchNow(*q, {{"a", nullptr, "k1"}}, now_ + std::chrono::minutes(3));
  EXPECT_FALSE(later.value()[0].duplicate);
  EXPECT_EQ(later.value()[0].message_id, 3u);
}

TEST_F(QueueTest, BatchGetReturnsWhatIsReadyUpToTheLimits) {
  auto q = Make("batch");
  for (const char* p : {"aa", "bb", "cc", "dd"}) Put(*q, p);
  std::optional<Result<std::vector<Delivery>>> got;
  WaitId id = 0;
  q->GetBatch(3, 1 << 20, {}, now_, now_, &id, [&](auto r) { got = std::move(r); });
  ASSERT_EQ(got->value().size(), 3u);
  EXPECT_EQ(got->value()[2].payload, "cc");
  q->GetBatch(10, 1, {}, now_, now_, &id, [&](auto r) { got = std::move(r); });
  ASSERT_EQ(got->value().size(), 1u);  // over max_bytes, but always one
  // A blocked batch get answers as soon as one message is ready.
  got.reset();
  q->GetBatch(10, 1 << 20, {}, now_, now_ + seconds(5), &id, [&](auto r) { got = std::move(r); });
  EXPECT_FALSE(got.has_value());
  Put(*q, "ee");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->value().size(), 1u);
  ExpectConserved();
}

// Streaming consumers: prefetch, acks by tag and range, release on detach.
std::vector<uint64_t> Tags(ConsumerOutbox& outbox) {
  std::vector<uint64_t> tags;
  auto pulled = outbox.Next(100, 1 << 20);
  if (pulled) {
    for (const auto& d : pulled->deliveries) tags.push_back(d.tag);
  }
  return tags;
}

TEST_F(QueueTest, ConsumerGetsAtMostPrefetchAndMoreAsItAcks) {
  auto q = Make("stream");
  for (int i = 0; i < 5; ++i) Put(*q, "m" + std::to_string(i));
  int wakes = 0;
  auto c = q->AttachConsumer(
      2, {}, [&] { ++wakes; }, now_);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(wakes, 1);
  EXPECT_EQ(Tags(*c.value().outbox), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(q->Stats().in_flight, 2u);
  Advance(*q, std::chrono::hours(2));  // no visibility timer on a stream's leases
  EXPECT_EQ(q->Stats().in_flight, 2u);
  q->ConsumerAck(c.value().id, {}, 2, now_);  // ack everything up to 2
  EXPECT_EQ(Tags(*c.value().outbox), (std::vector<uint64_t>{3, 4}));
  q->ConsumerAck(c.value().id, {4, 99}, 0, now_);
  auto pulled = c.value().outbox->Next(100, 1 << 20);
  ASSERT_TRUE(pulled.has_value());
  EXPECT_EQ(pulled->deliveries.at(0).tag, 5u);
  EXPECT_EQ(pulled->unknown_tags, std::vector<uint64_t>{99});
  const QueueStats s = q->Stats();
  EXPECT_EQ(s.total_done, 3u);
  ASSERT_EQ(s.consumers.size(), 1u);
  EXPECT_EQ(s.consumers[0].in_flight, 2u);
  EXPECT_EQ(s.consumers[0].acked, 3u);
  ExpectConserved();
}

TEST_F(QueueTest, ConsumerPullStopsAtItsByteBoundButTakesOne) {
  auto q = Make("stream");
  for (int i = 0; i < 5; ++i) Put(*q, "ab");  // 2 bytes each
  auto c = q->AttachConsumer(
      10, {}, [] {}, now_);
  ASSERT_TRUE(c.ok());
  ConsumerOutbox& outbox = *c.value().outbox;
  auto first = outbox.Next(100, 1);  // over the bound with one: that one
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->deliveries.size(), 1u);
  auto next = outbox.Next(100, 3);  // 2 < 3 takes another, then 4 >= 3
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->deliveries.size(), 2u);
  auto rest = outbox.Next(1, 1 << 20);  // the count bound
  ASSERT_TRUE(rest.has_value());
  EXPECT_EQ(rest->deliveries.size(), 1u);
  ExpectConserved();
}

TEST_F(QueueTest, ConsumerReleasesByTagAndRangeInTagOrder) {
  auto q = Make("stream");
  for (const char* p : {"a", "b", "c", "d"}) Put(*q, p);
  auto c = q->AttachConsumer(
      4, {}, [] {}, now_);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(Tags(*c.value().outbox), (std::vector<uint64_t>{1, 2, 3, 4}));
  q->ConsumerRelease(c.value().id, {4}, 2, now_);  // 1, 2 and 4 go back
  EXPECT_EQ(Tags(*c.value().outbox), (std::vector<uint64_t>{5, 6, 7}));
  const QueueStats s = q->Stats();
  EXPECT_EQ(s.consumers[0].in_flight, 4u);
  EXPECT_EQ(s.total_redelivered, 3u);
  ExpectConserved();
}

TEST_F(QueueTest, DetachReturnsEverythingHeldToTheHead) {
  auto q = Make("stream");
  for (const char* p : {"a", "b", "c"}) Put(*q, p);
  auto c = q->AttachConsumer(
      2, {}, [] {}, now_);
  Tags(*c.value().outbox);
  q->DetachConsumer(c.value().id, Error{Errc::kCancelled, "gone"}, now_);
  EXPECT_TRUE(c.value().outbox->Next(10, 1 << 20)->end.has_value());
  EXPECT_EQ(q->Stats().in_flight, 0u);
  Delivery a = MustGet(*q);
  EXPECT_EQ(a.payload, "a");
  EXPECT_EQ(a.delivery_count, 2u);
  EXPECT_EQ(MustGet(*q).payload, "b");
  EXPECT_EQ(MustGet(*q).payload, "c");
}

TEST_F(QueueTest, ConsumersAndBlockedGetsShareOneRotation) {
  auto q = Make("rotation");
  auto c = q->AttachConsumer(
      10, {}, [] {}, now_);
  auto& g = Get(*q, seconds(10));
  Put(*q, "1");  // the consumer was first in line
  Put(*q, "2");  // then the blocked get
  Put(*q, "3");  // then the consumer again
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g.result->value().payload, "2");
  auto pulled = c.value().outbox->Next(10, 1 << 20);
  ASSERT_EQ(pulled->deliveries.size(), 2u);
  EXPECT_EQ(pulled->deliveries[0].message->payload(), "1");
  EXPECT_EQ(pulled->deliveries[1].message->payload(), "3");
  EXPECT_EQ(q->Stats().waiting_getters, 0u);
}

TEST_F(QueueTest, AckTimeoutRequeuesAndReportsTheTag) {
  auto q = Make("stream");
  Put(*q, "slow");
  auto c = q->AttachConsumer(
      1, seconds(5), [] {}, now_);
  EXPECT_EQ(Tags(*c.value().outbox), std::vector<uint64_t>{1});
  Advance(*q, seconds(5));
  auto pulled = c.value().outbox->Next(10, 1 << 20);
  ASSERT_TRUE(pulled.has_value());
  EXPECT_EQ(pulled->expired, std::vector<uint64_t>{1});
  // The credit came back, so the same consumer gets the message again.
  ASSERT_EQ(pulled->deliveries.size(), 1u);
  EXPECT_EQ(pulled->deliveries[0].tag, 2u);
  EXPECT_EQ(pulled->deliveries[0].delivery_count, 2u);
}

TEST_F(QueueTest, ClosingAndDrainingEndsConsumers) {
  auto q = Make("stream");
  Put(*q, "last");
  auto c = q->AttachConsumer(
      5, {}, [] {}, now_);
  q->Close(now_);
  EXPECT_EQ(Tags(*c.value().outbox), std::vector<uint64_t>{1});
  q->ConsumerAck(c.value().id, {1}, 0, now_);
  auto end = c.value().outbox->Next(10, 1 << 20);
  ASSERT_TRUE(end->end.has_value());
  EXPECT_EQ(end->end->code, Errc::kQueueDrained);
  EXPECT_EQ(q->AttachConsumer(
                 5, {}, [] {}, now_)
                .error()
                .code,
            Errc::kQueueDrained);
}

TEST_F(QueueTest, CountersHoldTheInvariantThroughAMixedWorkload) {
  auto q = Make("mixed", 4);
  std::vector<Delivery> held;
  for (int round = 0; round < 50; ++round) {
    Put(*q, "x", seconds(1));
    if (round % 3 == 0 && q->Stats().size > 0) held.push_back(MustGet(*q));
    if (round % 5 == 0 && !held.empty()) {
      EXPECT_TRUE(q->TaskDone(held.back().tag, now_).ok());
      held.pop_back();
    }
    if (round % 7 == 0 && !held.empty()) {
      q->Release(held.front().tag, now_);
      held.erase(held.begin());
    }
    Advance(*q, seconds(1));
    ExpectConserved();
  }
}

// Hostile values, one test each (issue 11). Each failed before its fix.

Result<std::vector<PutResult>> PutFrom(Queue& q, const std::string& producer, uint64_t first,
                                       size_t count, TimePoint now) {
  std::vector<MessageSpec> batch(count, MessageSpec{"m", nullptr, {}});
  std::optional<Result<std::vector<PutResult>>> out;
  WaitId id = 0;
  q.PutBatch(
      batch, now, now, &id, [&out](Result<std::vector<PutResult>> r) { out = std::move(r); },
      BatchOrigin{producer, first});
  if (!out) return Error{Errc::kCancelled, "still waiting"};
  return *out;
}

TEST_F(QueueTest, AProducerSequenceJumpCostsNothing) {
  // Once padded one entry at a time under the queue lock: the broker hung
  // and grew ~200 MB/s.
  auto q = Make("jump");
  ASSERT_TRUE(PutFrom(*q, "p", 1, 1, now_).ok());
  auto far = PutFrom(*q, "p", uint64_t{1} << 62, 1, now_);
  ASSERT_TRUE(far.ok()) << far.error().message;
  EXPECT_EQ(far.value()[0].message_id, 2u);
  // Both are still recognised, and the state stays small.
  EXPECT_TRUE(PutFrom(*q, "p", uint64_t{1} << 62, 1, now_).value()[0].duplicate);
  EXPECT_TRUE(PutFrom(*q, "p", 1, 1, now_).value()[0].duplicate);
  EXPECT_LT(q->AccountedBytes(), 4096u);
  ExpectConserved();
}

TEST_F(QueueTest, ProducerSequencesOutOfRangeAreRefused) {
  auto q = Make("sequences");
  EXPECT_EQ(PutFrom(*q, "p", 0, 1, now_).error().code, Errc::kInvalidArgument);
  EXPECT_EQ(PutFrom(*q, "p", UINT64_MAX - 1, 4, now_).error().code, Errc::kInvalidArgument);
  // Past the kept window, an old number cannot be told from new work.
  const size_t kept = ProducerSequences::kIdsKept;
  for (uint64_t first = 1; first <= kept + kMaxBatchMessages; first += kMaxBatchMessages) {
    ASSERT_TRUE(PutFrom(*q, "p", first, kMaxBatchMessages, now_).ok());
  }
  auto old = PutFrom(*q, "p", 1, 1, now_);
  ASSERT_FALSE(old.ok());
  EXPECT_EQ(old.error().code, Errc::kInvalidArgument);
  EXPECT_NE(old.error().message.find("older"), std::string::npos);
  ExpectConserved();
}

TEST_F(QueueTest, ProducersPerQueueAreCapped) {
  QueueLimits limits;
  limits.max_producers = 2;
  MemoryBudget memory(0);
  QueueConfig c;
  c.name = "capped";
  auto q = std::make_shared<Queue>(c, 1, limits, &memory, nullptr, nullptr);
  ASSERT_TRUE(PutFrom(*q, "a", 1, 1, now_).ok());
  ASSERT_TRUE(PutFrom(*q, "b", 1, 1, now_).ok());
  EXPECT_EQ(PutFrom(*q, "c", 1, 1, now_).error().code, Errc::kTooManyProducers);
  // Once the others have been quiet for the dedup window, there is room.
  EXPECT_TRUE(PutFrom(*q, "c", 1, 1, now_ + limits.dedup_window + seconds(1)).ok());
}

TEST_F(QueueTest, LongDedupIdsAreRefusedAndKeptIdsAreCharged) {
  auto q = Make("dedup-memory");
  const std::string too_long(kMaxDedupIdBytes + 1, 'k');
  auto refused = PutBatchNow(*q, {{"a", nullptr, too_long}}, now_);
  ASSERT_TRUE(refused.ok());
  ASSERT_TRUE(refused.value()[0].error.has_value());
  EXPECT_EQ(refused.value()[0].error->code, Errc::kInvalidArgument);
  EXPECT_EQ(q->Stats().total_put, 0u);
  // 200 puts with the longest ids, each consumed and finished: the ids stay
  // for the dedup window, and the budget says so.
  for (int i = 0; i < 200; ++i) {
    std::string id = std::to_string(i);
    id.resize(kMaxDedupIdBytes, 'k');
    ASSERT_TRUE(PutBatchNow(*q, {{"", nullptr, id}}, now_).ok());
    ASSERT_TRUE(q->TaskDone(MustGet(*q).tag, now_).ok());
  }
  EXPECT_EQ(q->Stats().unfinished, 0u);
  EXPECT_GE(broker_.memory().used(), 200 * kMaxDedupIdBytes);
  ExpectConserved();
  // The timer forgets them after the window and hands the memory back.
  Advance(*q, std::chrono::minutes(3));
  EXPECT_EQ(broker_.memory().used(), 0u);
  ExpectConserved();
}

TEST_F(QueueTest, BatchesAndGetsAreBounded) {
  auto q = Make("bounded-batches");
  std::vector<MessageSpec> huge(kMaxBatchMessages + 1, MessageSpec{"m", nullptr, {}});
  EXPECT_EQ(PutBatchNow(*q, huge, now_).error().code, Errc::kInvalidArgument);
  std::vector<MessageSpec> many(kMaxBatchMessages, MessageSpec{"m", nullptr, {}});
  ASSERT_TRUE(PutBatchNow(*q, many, now_).ok());
  // Once one Get took all 20,000 messages of a queue.
  std::optional<Result<std::vector<Delivery>>> got;
  WaitId id = 0;
  q->GetBatch(4'000'000'000, UINT64_MAX, {}, now_, now_, &id, [&](auto r) { got = std::move(r); });
  ASSERT_TRUE(got.has_value() && got->ok());
  EXPECT_EQ(got->value().size(), kMaxGetMessages);
  ExpectConserved();
}

TEST_F(QueueTest, ABlockedPutRegistersForMemoryOnce) {
  BrokerLimits limits = Limits();
  limits.max_memory = 100;
  Broker broker(limits, nullptr);
  QueueConfig c;
  c.name = "memory";
  auto q = broker.CreateQueue(c).value().queue;
  ASSERT_TRUE(Put(*q, std::string(60, 'a')).ok());
  auto& blocked = Put(*q, std::string(60, 'b'), seconds(10));
  EXPECT_FALSE(blocked.done());
  // Every change to the queue retries the head putter; it once added a
  // memory listener per retry.
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(q->Release(MustGet(*q).tag, now_).ok());  // each serves the waiters twice
  }
  EXPECT_FALSE(blocked.done());
  EXPECT_LE(broker.memory().listeners(), 1u);
}

TEST_F(QueueTest, UnwrittenExpiredDeliveriesAreDroppedNotDuplicated) {
  // A consumer that never reads: each ack_timeout once left the old copy in
  // the outbox and pushed a fresh one, outside --max-memory.
  auto q = Make("unread");
  Put(*q, std::string(100, 'x'));
  Put(*q, std::string(100, 'y'));
  auto c = q->AttachConsumer(
      2, seconds(5), [] {}, now_);
  ASSERT_TRUE(c.ok());
  const uint64_t one_round = broker_.memory().used();
  for (int i = 0; i < 10; ++i) {
    Advance(*q, seconds(5));
    ExpectConserved();
  }
  EXPECT_EQ(broker_.memory().used(), one_round);
  auto pulled = c.value().outbox->Next(100, 1 << 20);
  ASSERT_TRUE(pulled.has_value());
  // Only the two deliveries it holds now, and no notices for copies it
  // never saw.
  ASSERT_EQ(pulled->deliveries.size(), 2u);
  EXPECT_TRUE(pulled->expired.empty());
  EXPECT_EQ(pulled->deliveries[0].message->payload(), std::string(100, 'x'));
  // Copies it never saw were not deliveries: a small max_deliveries cannot
  // dead-letter a message nobody received.
  EXPECT_EQ(pulled->deliveries[0].delivery_count, 1u);
  EXPECT_EQ(q->Stats().total_redelivered, 0u);
  ExpectConserved();
}

// A delivery waiting to be written once held a second copy of its payload,
// charged on top of the message: a consumer that did not read cost the
// broker twice its prefetch.
TEST_F(QueueTest, UnwrittenDeliveriesShareTheQueuesCopy) {
  auto q = Make("shared");
  for (int i = 0; i < 8; ++i) Put(*q, std::string(1000, static_cast<char>('a' + i)));
  const uint64_t queued = broker_.memory().used();
  EXPECT_GE(queued, 8'000u);
  auto c = q->AttachConsumer(
      8, {}, [] {}, now_);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(q->Stats().in_flight, 8u);
  EXPECT_EQ(broker_.memory().used(), queued);  // not 2x
  ExpectConserved();
  EXPECT_EQ(Tags(*c.value().outbox).size(), 8u);
  EXPECT_EQ(broker_.memory().used(), queued);
  ExpectConserved();
}

// The stream writes from the queue's block after the queue's lock, even when
// the message is acked (and let go by the queue) in between.
TEST_F(QueueTest, PulledDeliveriesOutliveTheirAck) {
  auto q = Make("pulled");
  Put(*q, std::string(1000, 'x'), {}, Headers{{"k", "v"}});
  auto c = q->AttachConsumer(
      1, {}, [] {}, now_);
  ASSERT_TRUE(c.ok());
  auto pulled = c.value().outbox->Next(10, 1 << 20);
  ASSERT_TRUE(pulled.has_value());
  ASSERT_EQ(pulled->deliveries.size(), 1u);
  q->ConsumerAck(c.value().id, {}, UINT64_MAX, now_);
  EXPECT_EQ(q->Stats().total_done, 1u);
  EXPECT_EQ(broker_.memory().used(), 0u);  // the queue's charge ends with the ack
  const StreamDelivery& d = pulled->deliveries[0];
  EXPECT_EQ(d.message->payload(), std::string(1000, 'x'));
  EXPECT_EQ(d.message->headers(), (Headers{{"k", "v"}}));
  EXPECT_EQ(d.delivery_count, 1u);
  ExpectConserved();
}

TEST(MessageTest, RefsKeepTheBlockUntilTheLastLetsGo) {
  MessagePtr owner = Message::Make(7, "payload", {{"h", "1"}});
  MessageRef a(*owner);
  MessageRef b = a;
  owner.reset();
  EXPECT_EQ(b->payload(), "payload");
  a = MessageRef();
  EXPECT_EQ(b->id(), 7u);
  EXPECT_EQ(b->headers().at("h"), "1");
}

TEST_F(QueueTest, AckingUnseenDeliveriesDropsThemFromTheOutbox) {
  auto q = Make("unseen");
  for (const char* p : {"a", "b", "c"}) Put(*q, p);
  auto c = q->AttachConsumer(
      3, {}, [] {}, now_);
  q->ConsumerRelease(c.value().id, {}, UINT64_MAX, now_);  // before reading anything
  auto pulled = c.value().outbox->Next(100, 1 << 20);
  ASSERT_TRUE(pulled.has_value());
  // The released copies (tags 1-3) never arrive; the redeliveries do.
  ASSERT_EQ(pulled->deliveries.size(), 3u);
  EXPECT_EQ(pulled->deliveries[0].tag, 4u);
  ExpectConserved();
}

TEST_F(QueueTest, NoticesOfUnknownTagsAreBounded) {
  auto q = Make("notices");
  auto c = q->AttachConsumer(
      1, {}, [] {}, now_);
  std::vector<uint64_t> bogus(ConsumerOutbox::kMaxNotices, 7);
  q->ConsumerAck(c.value().id, bogus, 0, now_);
  q->ConsumerAck(c.value().id, bogus, 0, now_);
  auto pulled = c.value().outbox->Next(100, 1 << 20);
  ASSERT_TRUE(pulled.has_value());
  EXPECT_EQ(pulled->unknown_tags.size(), ConsumerOutbox::kMaxNotices);
}

// A random mix of every operation on two queues (one the other's dead-letter
// queue), checking conservation after each step.
TEST_F(QueueTest, ConservationHoldsThroughRandomOperations) {
  QueueConfig dlq_config;
  dlq_config.name = "random-dlq";
  auto dlq = Make(dlq_config);
  QueueConfig config;
  config.name = "random";
  config.max_size = 20;
  config.max_deliveries = 3;
  config.dead_letter_queue = "random-dlq";
  config.visibility_timeout = seconds(3);
  config.retry_backoff = {milliseconds(0), milliseconds(700)};
  config.max_priority = 3;
  auto q = Make(config);
  std::mt19937 rng(11);
  std::vector<Delivery> held;
  struct Stream {
    uint64_t id;
    std::shared_ptr<ConsumerOutbox> outbox;
    std::vector<uint64_t> seen;
  };
  std::vector<Stream> streams;
  std::deque<std::optional<Result<std::vector<PutResult>>>> batch_answers;
  for (int step = 0; step < 3000; ++step) {
    switch (rng() % 12) {
      case 0:
      case 1:
        Put(*q, std::string(rng() % 50, 'p'), seconds(rng() % 3));
        break;
      case 2: {
        std::vector<MessageSpec> batch(1 + rng() % 5, MessageSpec{"b", nullptr, {}});
        if (rng() % 2) batch[0].dedup_id = "d" + std::to_string(rng() % 10);
        if (rng() % 3 == 0) batch.back().attrs.ready_at = now_ + milliseconds(rng() % 3000);
        if (rng() % 3 == 0) batch.front().attrs.priority = static_cast<uint8_t>(rng() % 5);
        if (rng() % 3 == 0 && batch.front().attrs.ready_at == TimePoint{}) {
          batch.front().attrs.group = rng() % 2 ? "red" : "blue";
        }
        if (rng() % 3 == 0) {
          batch.front().attrs.expires_at =
              std::max(now_, batch.front().attrs.ready_at) + milliseconds(1 + rng() % 4000);
        }
        PutBatchNow(*q, batch, now_, seconds(rng() % 2), &batch_answers.emplace_back());
        break;
      }
      case 3: {
        auto& g = Get(*q, seconds(rng() % 2));
        if (g.ok()) held.push_back(g.result->value());
        break;
      }
      case 4:
        if (!held.empty()) {
          const size_t i = rng() % held.size();
          (void)q->TaskDone(held[i].tag, now_);
          held.erase(held.begin() + static_cast<long>(i));
        }
        break;
      case 5:
        if (!held.empty()) {
          const size_t i = rng() % held.size();
          std::optional<Duration> delay;
          if (rng() % 2) delay = milliseconds(rng() % 2000);
          (void)q->Release(held[i].tag, now_, delay, rng() % 10 == 0);
          held.erase(held.begin() + static_cast<long>(i));
        }
        break;
      case 6:
        if (streams.size() < 3) {
          auto c = q->AttachConsumer(
              1 + rng() % 4, seconds(rng() % 3), [] {}, now_);
          if (c.ok()) streams.push_back({c.value().id, c.value().outbox, {}});
        }
        break;
      case 7:
        for (Stream& s : streams) {
          if (auto pulled = s.outbox->Next(rng() % 4, 1 + rng() % 8); pulled && !pulled->end) {
            for (const auto& d : pulled->deliveries) s.seen.push_back(d.tag);
          }
        }
        break;
      case 8:
        if (!streams.empty()) {
          Stream& s = streams[rng() % streams.size()];
          if (!s.seen.empty()) {
            const bool ack = rng() % 3 != 0;
            std::vector<uint64_t> tags{s.seen[rng() % s.seen.size()]};
            if (ack) {
              q->ConsumerAck(s.id, tags, rng() % 2 ? s.seen.front() : 0, now_);
            } else {
              q->ConsumerRelease(s.id, tags, 0, now_);
            }
          }
        }
        break;
      case 9:
        if (!streams.empty() && rng() % 4 == 0) {
          const size_t i = rng() % streams.size();
          q->DetachConsumer(streams[i].id, Error{Errc::kCancelled, "gone"}, now_);
          streams.erase(streams.begin() + static_cast<long>(i));
        }
        break;
      case 10: {
        auto& g = Get(*dlq);
        if (g.ok()) (void)dlq->TaskDone(g.result->value().tag, now_);
        break;
      }
      case 11:
        Advance(*q, milliseconds(rng() % 1500));
        dlq->ExpireDue(now_);
        break;
    }
    ExpectConserved();
    if (HasFailure()) FAIL() << "at step " << step;
  }
}

}  // namespace
}  // namespace basin::core
