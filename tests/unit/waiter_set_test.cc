// WaiterSet alone: the blocked calls of one queue (three FIFOs, one deadline
// index, one cap), with time passed in by hand.
#include "broker/core/waiter_set.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace basin::core {
namespace {

using std::chrono::nanoseconds;
using std::chrono::seconds;

const TimePoint t0 = TimePoint() + std::chrono::hours(1);

// Each waiter carries a label so that what comes out can be told apart:
// a getter's max_messages, a putter's first_sequence, a joiner's deadline.
GetWaiter Getter(TimePoint deadline, size_t label) {
  return GetWaiter{deadline, seconds(30), label, 0, [](Result<std::vector<Delivery>>) {}, 0};
}

PutWaiter Putter(TimePoint deadline, uint64_t label) {
  PutWaiter p;
  p.deadline = deadline;
  p.first_sequence = label;
  p.cb = [](Result<std::vector<PutResult>>) {};
  return p;
}

JoinWaiter Joiner(TimePoint deadline) {
  return JoinWaiter{deadline, [](Result<void>) {}};
}

std::string Label(const WaiterSet::Ended& w) {
  if (const auto* g = std::get_if<GetWaiter>(&w)) return "g" + std::to_string(g->max_messages);
  if (const auto* p = std::get_if<PutWaiter>(&w)) return "p" + std::to_string(p->first_sequence);
  const auto& j = std::get<JoinWaiter>(w);
  return "j" + std::to_string(std::chrono::duration_cast<seconds>(j.deadline - t0).count());
}

std::vector<std::string> Labels(const std::vector<WaiterSet::Ended>& ws) {
  std::vector<std::string> out;
  for (const auto& w : ws) out.push_back(Label(w));
  return out;
}

template <typename Map>
std::vector<WaitId> Ids(const Map& m) {
  std::vector<WaitId> out;
  for (const auto& [id, w] : m) out.push_back(id);
  return out;
}

TEST(WaiterSetTest, IdsRiseAcrossKindsSoEachKindIsServedInArrivalOrder) {
  WaiterSet w(10);
  EXPECT_EQ(w.AddGetter(Getter(kNever, 1)), 1u);
  EXPECT_EQ(w.AddPutter(Putter(kNever, 1)), 2u);
  EXPECT_EQ(w.AddJoiner(Joiner(kNever)), 3u);
  EXPECT_EQ(w.AddGetter(Getter(kNever, 2)), 4u);
  EXPECT_EQ(w.AddPutter(Putter(kNever, 2)), 5u);
  EXPECT_EQ(w.AddGetter(Getter(kNever, 3)), 6u);

  EXPECT_EQ(Ids(w.getters()), (std::vector<WaitId>{1, 4, 6}));
  EXPECT_EQ(Ids(w.putters()), (std::vector<WaitId>{2, 5}));
  EXPECT_EQ(Ids(w.joiners()), (std::vector<WaitId>{3}));
  EXPECT_EQ(w.getters().begin()->second.max_messages, 1u);  // the oldest is first
  EXPECT_EQ(w.waiting_getters(), 3u);
  EXPECT_EQ(w.waiting_putters(), 2u);
  EXPECT_EQ(w.waiting_joiners(), 1u);
}

TEST(WaiterSetTest, AnEmptySetHasNothingToTakeAndNoDeadline) {
  WaiterSet w(10);
  EXPECT_EQ(w.next_deadline(), kNever);
  EXPECT_FALSE(w.Take(1).has_value());
  EXPECT_TRUE(w.TakeDue(t0 + std::chrono::hours(1000)).empty());
  EXPECT_TRUE(w.TakeAll().empty());
  EXPECT_TRUE(w.TakeGetters().empty());
  EXPECT_TRUE(w.TakePutters().empty());
  EXPECT_TRUE(w.TakeJoiners().empty());
  EXPECT_EQ(w.waiting_getters(), 0u);
  EXPECT_EQ(w.waiting_putters(), 0u);
  EXPECT_EQ(w.waiting_joiners(), 0u);
  EXPECT_TRUE(w.CheckCap("queue 'q'").ok());
}

TEST(WaiterSetTest, CheckCapRefusesOnceEveryKindTogetherReachesTheCap) {
  WaiterSet w(3);
  EXPECT_TRUE(w.CheckCap("queue 'q'").ok());
  w.AddGetter(Getter(kNever, 1));
  w.AddPutter(Putter(kNever, 1));
  EXPECT_TRUE(w.CheckCap("queue 'q'").ok());
  w.AddJoiner(Joiner(kNever));
  const Result<void> full = w.CheckCap("queue 'q'");
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code, Errc::kTooManyWaiters);
  EXPECT_EQ(full.error().message, "queue 'q' has 3 blocked calls (limit 3)");

  // One ends: there is room again.
  ASSERT_TRUE(w.Take(2).has_value());
  EXPECT_TRUE(w.CheckCap("queue 'q'").ok());
}

TEST(WaiterSetTest, ACapOfZeroRefusesTheFirstWaiter) {
  WaiterSet w(0);
  const Result<void> r = w.CheckCap("queue 'z'");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kTooManyWaiters);
  EXPECT_EQ(r.error().message, "queue 'z' has 0 blocked calls (limit 0)");
}

TEST(WaiterSetTest, ConsumerTurnsDoNotCountAsWaitingOrTowardTheCap) {
  WaiterSet w(1);
  WaiterSet::Getters::node_type spare;
  w.AddTurn(7, spare);
  w.AddTurn(8, spare);
  EXPECT_EQ(w.getters().size(), 2u);
  EXPECT_EQ(w.waiting_getters(), 0u);
  EXPECT_TRUE(w.CheckCap("queue 'q'").ok());
  w.AddGetter(Getter(kNever, 1));
  EXPECT_EQ(w.waiting_getters(), 1u);
  EXPECT_FALSE(w.CheckCap("queue 'q'").ok());
}

TEST(WaiterSetTest, ATurnIsAGetterWithoutDeadlineInTheSameRotation) {
  WaiterSet w(10);
  WaiterSet::Getters::node_type spare;
  const WaitId g = w.AddGetter(Getter(t0 + seconds(5), 1));
  const WaitId turn = w.AddTurn(42, spare);
  EXPECT_EQ(turn, g + 1);
  EXPECT_EQ(Ids(w.getters()), (std::vector<WaitId>{g, turn}));
  const GetWaiter& t = w.getters().at(turn);
  EXPECT_EQ(t.consumer, 42u);
  EXPECT_EQ(t.deadline, kNever);
  EXPECT_EQ(t.max_messages, 1u);
  // Only the blocked Get has a deadline.
  EXPECT_EQ(w.next_deadline(), t0 + seconds(5));
}

TEST(WaiterSetTest, TakeTurnHandsBackTheNodeAndAddTurnReusesIt) {
  WaiterSet w(10);
  WaiterSet::Getters::node_type spare;
  const WaitId first = w.AddTurn(7, spare);
  const GetWaiter* block = &w.getters().at(first);

  spare = w.TakeTurn(first);
  ASSERT_FALSE(spare.empty());
  EXPECT_EQ(spare.key(), first);
  EXPECT_EQ(spare.mapped().consumer, 7u);
  EXPECT_TRUE(w.getters().empty());
  EXPECT_EQ(w.waiting_getters(), 0u);

  // The next turn goes to the back of the rotation in the same node.
  const WaitId g = w.AddGetter(Getter(kNever, 1));
  const WaitId second = w.AddTurn(7, spare);
  EXPECT_TRUE(spare.empty());
  EXPECT_GT(second, g);
  EXPECT_EQ(&w.getters().at(second), block);
  EXPECT_EQ(w.getters().at(second).consumer, 7u);
  EXPECT_EQ(Ids(w.getters()), (std::vector<WaitId>{g, second}));
  EXPECT_EQ(w.waiting_getters(), 1u);
}

TEST(WaiterSetTest, AReusedNodeCarriesTheConsumerItIsAddedFor) {
  WaiterSet w(10);
  WaiterSet::Getters::node_type spare;
  spare = w.TakeTurn(w.AddTurn(7, spare));
  const WaitId turn = w.AddTurn(8, spare);
  EXPECT_EQ(w.getters().at(turn).consumer, 8u);
}

TEST(WaiterSetTest, PoppingATurnKeepsTheWaitingCountRight) {
  WaiterSet w(10);
  WaiterSet::Getters::node_type spare;
  w.AddTurn(7, spare);
  w.AddGetter(Getter(kNever, 1));
  w.PopGetter();  // the turn, oldest
  EXPECT_EQ(w.waiting_getters(), 1u);
  w.PopGetter();
  EXPECT_EQ(w.waiting_getters(), 0u);
  EXPECT_TRUE(w.CheckCap("queue 'q'").ok());
}

TEST(WaiterSetTest, TakeTurnOfATurnThatEndedIsEmptyAndCountsNothing) {
  WaiterSet w(10);
  WaiterSet::Getters::node_type spare;
  const WaitId turn = w.AddTurn(7, spare);
  w.AddGetter(Getter(kNever, 1));
  EXPECT_FALSE(w.TakeTurn(turn).empty());
  EXPECT_TRUE(w.TakeTurn(turn).empty());
  EXPECT_TRUE(w.TakeTurn(999).empty());
  EXPECT_EQ(w.waiting_getters(), 1u);
  EXPECT_EQ(w.getters().size(), 1u);
}

TEST(WaiterSetTest, TakeFindsEachWaiterOnceWhateverItsKind) {
  WaiterSet w(10);
  const WaitId g = w.AddGetter(Getter(t0 + seconds(1), 5));
  const WaitId p = w.AddPutter(Putter(t0 + seconds(2), 6));
  const WaitId j = w.AddJoiner(Joiner(t0 + seconds(3)));

  auto put = w.Take(p);
  ASSERT_TRUE(put.has_value());
  EXPECT_EQ(Label(*put), "p6");
  auto get = w.Take(g);
  ASSERT_TRUE(get.has_value());
  EXPECT_EQ(Label(*get), "g5");
  auto join = w.Take(j);
  ASSERT_TRUE(join.has_value());
  EXPECT_EQ(Label(*join), "j3");

  EXPECT_FALSE(w.Take(g).has_value());
  EXPECT_FALSE(w.Take(p).has_value());
  EXPECT_FALSE(w.Take(j).has_value());
  EXPECT_FALSE(w.Take(0).has_value());
  EXPECT_FALSE(w.Take(999).has_value());
  // Their deadlines left with them.
  EXPECT_EQ(w.next_deadline(), kNever);
  EXPECT_TRUE(w.TakeDue(t0 + seconds(10)).empty());
}

TEST(WaiterSetTest, TakeLeavesAConsumersTurnToTheQueue) {
  WaiterSet w(10);
  WaiterSet::Getters::node_type spare;
  const WaitId turn = w.AddTurn(7, spare);
  EXPECT_FALSE(w.Take(turn).has_value());
  EXPECT_EQ(w.getters().size(), 1u);
  EXPECT_EQ(w.getters().at(turn).consumer, 7u);
}

TEST(WaiterSetTest, TakeKeepsWhatAPutterCarries) {
  WaiterSet w(10);
  PutWaiter p = Putter(kNever, 9);
  p.msgs.push_back(Message::Make(0, "hello", {}));
  p.dedup_ids.push_back("d1");
  p.slots.push_back(3);
  p.results.resize(4);
  p.producer = "prod";
  const WaitId id = w.AddPutter(std::move(p));
  auto out = w.Take(id);
  ASSERT_TRUE(out.has_value());
  PutWaiter& taken = std::get<PutWaiter>(*out);
  ASSERT_EQ(taken.msgs.size(), 1u);
  EXPECT_EQ(taken.msgs[0]->payload(), "hello");
  EXPECT_EQ(taken.dedup_ids, (std::vector<std::string>{"d1"}));
  EXPECT_EQ(taken.slots, (std::vector<size_t>{3}));
  EXPECT_EQ(taken.results.size(), 4u);
  EXPECT_EQ(taken.producer, "prod");
}

TEST(WaiterSetTest, TakeDueTakesDeadlinesUpToAndIncludingNowInDeadlineOrder) {
  WaiterSet w(10);
  w.AddGetter(Getter(t0 + seconds(3), 1));
  w.AddPutter(Putter(t0 + seconds(1), 2));
  w.AddJoiner(Joiner(t0 + seconds(2)));
  w.AddGetter(Getter(t0 + seconds(1), 4));  // same deadline as p2: arrival order
  w.AddPutter(Putter(kNever, 5));

  EXPECT_EQ(w.next_deadline(), t0 + seconds(1));
  EXPECT_TRUE(w.TakeDue(t0 + seconds(1) - nanoseconds(1)).empty());
  EXPECT_EQ(Labels(w.TakeDue(t0 + seconds(1))), (std::vector<std::string>{"p2", "g4"}));
  EXPECT_EQ(w.next_deadline(), t0 + seconds(2));
  EXPECT_EQ(Labels(w.TakeDue(t0 + seconds(10))), (std::vector<std::string>{"j2", "g1"}));
  EXPECT_EQ(w.next_deadline(), kNever);

  // A waiter without a deadline is never due; the others are gone.
  EXPECT_TRUE(w.TakeDue(t0 + std::chrono::hours(1'000'000)).empty());
  EXPECT_EQ(Ids(w.putters()), (std::vector<WaitId>{5}));
  EXPECT_TRUE(w.getters().empty());
  EXPECT_TRUE(w.joiners().empty());
}

TEST(WaiterSetTest, ADeadlineEqualToNowIsDue) {
  WaiterSet w(10);
  w.AddJoiner(Joiner(t0));
  EXPECT_EQ(w.next_deadline(), t0);
  EXPECT_EQ(Labels(w.TakeDue(t0)), (std::vector<std::string>{"j0"}));
  EXPECT_EQ(w.waiting_joiners(), 0u);
}

TEST(WaiterSetTest, PopRemovesTheOldestOfItsKindAndItsDeadline) {
  WaiterSet w(10);
  w.AddGetter(Getter(t0 + seconds(1), 1));
  w.AddGetter(Getter(t0 + seconds(4), 2));
  w.AddPutter(Putter(t0 + seconds(2), 3));
  w.AddPutter(Putter(t0 + seconds(5), 4));
  w.AddJoiner(Joiner(t0 + seconds(3)));
  w.AddJoiner(Joiner(t0 + seconds(6)));

  w.PopGetter();
  EXPECT_EQ(w.getters().begin()->second.max_messages, 2u);
  EXPECT_EQ(w.next_deadline(), t0 + seconds(2));
  w.PopPutter();
  EXPECT_EQ(w.putters().begin()->second.first_sequence, 4u);
  EXPECT_EQ(w.next_deadline(), t0 + seconds(3));
  w.PopJoiner();
  EXPECT_EQ(w.joiners().begin()->second.deadline, t0 + seconds(6));
  EXPECT_EQ(w.next_deadline(), t0 + seconds(4));

  EXPECT_EQ(w.waiting_getters(), 1u);
  EXPECT_EQ(w.waiting_putters(), 1u);
  EXPECT_EQ(w.waiting_joiners(), 1u);
  // What is left is exactly what comes due.
  EXPECT_EQ(Labels(w.TakeDue(t0 + seconds(10))), (std::vector<std::string>{"g2", "p4", "j6"}));
}

TEST(WaiterSetTest, TakeAllEndsEveryWaiterButTheConsumersTurns) {
  WaiterSet w(10);
  WaiterSet::Getters::node_type spare;
  w.AddJoiner(Joiner(t0 + seconds(1)));
  w.AddPutter(Putter(t0 + seconds(2), 2));
  const WaitId turn = w.AddTurn(7, spare);
  w.AddGetter(Getter(t0 + seconds(3), 3));
  w.AddGetter(Getter(kNever, 4));

  EXPECT_EQ(Labels(w.TakeAll()), (std::vector<std::string>{"g3", "g4", "p2", "j1"}));
  EXPECT_EQ(w.next_deadline(), kNever);
  EXPECT_EQ(w.waiting_getters(), 0u);
  EXPECT_EQ(w.waiting_putters(), 0u);
  EXPECT_EQ(w.waiting_joiners(), 0u);
  EXPECT_EQ(Ids(w.getters()), (std::vector<WaitId>{turn}));
  EXPECT_TRUE(w.TakeAll().empty());
}

TEST(WaiterSetTest, TakeOfOneKindLeavesTheOthersAndTheirDeadlines) {
  WaiterSet w(10);
  WaiterSet::Getters::node_type spare;
  w.AddGetter(Getter(t0 + seconds(1), 1));
  w.AddPutter(Putter(t0 + seconds(2), 2));
  w.AddJoiner(Joiner(t0 + seconds(3)));
  w.AddPutter(Putter(t0 + seconds(4), 4));
  w.AddTurn(7, spare);

  std::vector<PutWaiter> puts = w.TakePutters();
  ASSERT_EQ(puts.size(), 2u);
  EXPECT_EQ(puts[0].first_sequence, 2u);
  EXPECT_EQ(puts[1].first_sequence, 4u);
  EXPECT_EQ(w.waiting_putters(), 0u);
  EXPECT_EQ(w.next_deadline(), t0 + seconds(1));

  std::vector<GetWaiter> gets = w.TakeGetters();
  ASSERT_EQ(gets.size(), 1u);
  EXPECT_EQ(gets[0].max_messages, 1u);
  EXPECT_EQ(w.getters().size(), 1u);  // the turn stays
  EXPECT_EQ(w.next_deadline(), t0 + seconds(3));

  std::vector<JoinWaiter> joins = w.TakeJoiners();
  ASSERT_EQ(joins.size(), 1u);
  EXPECT_EQ(joins[0].deadline, t0 + seconds(3));
  EXPECT_EQ(w.next_deadline(), kNever);
  EXPECT_TRUE(w.TakeDue(t0 + seconds(10)).empty());
}

TEST(WaiterSetTest, FailAnswersEachKindWithTheErrorOnlyWhenRun) {
  std::optional<Result<std::vector<Delivery>>> got;
  std::optional<Result<std::vector<PutResult>>> put;
  std::optional<Result<void>> joined;
  GetWaiter g = Getter(kNever, 1);
  g.cb = [&](Result<std::vector<Delivery>> r) { got = std::move(r); };
  PutWaiter p = Putter(kNever, 1);
  p.cb = [&](Result<std::vector<PutResult>> r) { put = std::move(r); };
  JoinWaiter j{kNever, [&](Result<void> r) { joined = std::move(r); }};

  auto fail_get = WaiterSet::Fail(WaiterSet::Ended(std::move(g)), {Errc::kShutdown, "stopping"});
  auto fail_put = WaiterSet::Fail(WaiterSet::Ended(std::move(p)), {Errc::kQueueDeleted, "gone"});
  auto fail_join = WaiterSet::Fail(WaiterSet::Ended(std::move(j)), {Errc::kCancelled, "bye"});
  EXPECT_FALSE(got.has_value());
  EXPECT_FALSE(put.has_value());
  EXPECT_FALSE(joined.has_value());

  fail_get();
  fail_put();
  fail_join();
  ASSERT_TRUE(got.has_value());
  ASSERT_FALSE(got->ok());
  EXPECT_EQ(got->error().code, Errc::kShutdown);
  EXPECT_EQ(got->error().message, "stopping");
  ASSERT_TRUE(put.has_value());
  ASSERT_FALSE(put->ok());
  EXPECT_EQ(put->error().code, Errc::kQueueDeleted);
  EXPECT_EQ(put->error().message, "gone");
  ASSERT_TRUE(joined.has_value());
  ASSERT_FALSE(joined->ok());
  EXPECT_EQ(joined->error().code, Errc::kCancelled);
  EXPECT_EQ(joined->error().message, "bye");
}

TEST(WaiterSetTest, WaitersTakenByDeadlineCanBeFailed) {
  WaiterSet w(10);
  int calls = 0;
  std::optional<Errc> code;
  GetWaiter g = Getter(t0, 1);
  g.cb = [&](Result<std::vector<Delivery>> r) {
    ++calls;
    code = r.error().code;
  };
  w.AddGetter(std::move(g));
  std::vector<WaiterSet::Ended> due = w.TakeDue(t0);
  ASSERT_EQ(due.size(), 1u);
  WaiterSet::Fail(std::move(due[0]), {Errc::kQueueEmpty, "empty"})();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(code, Errc::kQueueEmpty);
}

}  // namespace
}  // namespace basin::core
