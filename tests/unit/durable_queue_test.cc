// A durable queue's side of the journal, with a journal the test commits by
// hand: what is admitted stays invisible and unanswered until it is durable,
// a failed write gives the room back, and a restore brings the messages back
// in order with their delivery counts.
#include <gtest/gtest.h>

#include <deque>
#include <optional>
#include <vector>

#include "broker/core/queue.h"

namespace basin::core {
namespace {

using std::chrono::seconds;

class ManualJournal final : public QueueJournal {
 public:
  struct PutCall {
    std::vector<uint64_t> ids;
    Committed committed;
    PutKeys keys;
  };
  void Put(const std::vector<const Message*>& messages, const PutKeys& keys,
           Committed committed) override {
    PutCall call{{}, std::move(committed), keys};
    for (const Message* m : messages) call.ids.push_back(m->id());
    puts.push_back(std::move(call));
  }
  void Delivered(const std::vector<uint64_t>& ids) override {
    delivered.insert(delivered.end(), ids.begin(), ids.end());
  }
  void Done(const std::vector<uint64_t>& ids) override {
    done.insert(done.end(), ids.begin(), ids.end());
  }
  void Closed(Committed) override { closed = true; }
  void Binding(const std::string& pattern, bool bound) override {
    bindings.emplace_back(pattern, bound);
  }
  void Deleted() override { deleted = true; }

  // Completes the oldest outstanding put.
  void Commit(std::optional<Error> error = std::nullopt) {
    PutCall call = std::move(puts.front());
    puts.pop_front();
    call.committed(std::move(error), Clock::now());
  }

  std::deque<PutCall> puts;
  std::vector<uint64_t> delivered;
  std::vector<uint64_t> done;
  bool closed = false;
  bool deleted = false;
  std::vector<std::pair<std::string, bool>> bindings;
};

class DurableQueueTest : public ::testing::Test {
 protected:
  std::shared_ptr<Queue> Make(uint64_t max_size = 0, uint32_t max_deliveries = 0) {
    QueueConfig c;
    c.name = "durable";
    c.max_size = max_size;
    c.max_deliveries = max_deliveries;
    c.visibility_timeout = seconds(10);
    c.durable = true;
    return std::make_shared<Queue>(c, 1, QueueLimits{}, &memory_, nullptr, nullptr, journal_);
  }
  std::optional<Result<uint64_t>>& Put(Queue& q, const std::string& payload,
                                       BatchOrigin origin = {}) {
    auto& out = puts_.emplace_back();
    WaitId id = 0;
    std::vector<MessageSpec> one{{payload, nullptr, {}}};
    q.PutBatch(
        one, now_, now_, &id,
        [&out](Result<std::vector<PutResult>> r) {
          if (!r.ok()) {
            out = r.error();
          } else {
            out = r.value().front().message_id;
          }
        },
        origin);
    return out;
  }
  std::optional<Result<Delivery>> TryGet(Queue& q) {
    std::optional<Result<Delivery>> out;
    WaitId id = 0;
    q.Get({}, now_, now_, &id, [&out](Result<Delivery> r) { out = std::move(r); });
    return out;
  }

  MemoryBudget memory_{0};
  std::shared_ptr<ManualJournal> journal_ = std::make_shared<ManualJournal>();
  TimePoint now_ = Clock::now();
  std::deque<std::optional<Result<uint64_t>>> puts_;
};

TEST_F(DurableQueueTest, APutIsAnsweredAndVisibleOnlyOnceItIsDurable) {
  auto q = Make();
  auto& put = Put(*q, "a");
  EXPECT_FALSE(put.has_value());
  ASSERT_EQ(journal_->puts.size(), 1u);
  auto get = TryGet(*q);
  ASSERT_TRUE(get.has_value());
  EXPECT_EQ(get->error().code, Errc::kQueueEmpty);
  journal_->Commit();
  ASSERT_TRUE(put.has_value() && put->ok());
  EXPECT_EQ(put->value(), 1u);
  get = TryGet(*q);
  ASSERT_TRUE(get.has_value() && get->ok());
  EXPECT_EQ(get->value().payload, "a");
  EXPECT_EQ(journal_->delivered, std::vector<uint64_t>{1});
  ASSERT_TRUE(q->TaskDone(get->value().tag, now_).ok());
  EXPECT_EQ(journal_->done, std::vector<uint64_t>{1});
}

TEST_F(DurableQueueTest, PendingPutsTakeRoomAndBecomeReadyInAdmissionOrder) {
  auto q = Make(/*max_size=*/2);
  auto& a = Put(*q, "a");
  auto& b = Put(*q, "b");
  auto& c = Put(*q, "c");  // no room: two are pending
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->error().code, Errc::kQueueFull);
  // The second write is confirmed first; the first batch still leads.
  auto second = std::move(journal_->puts.back());
  journal_->puts.pop_back();
  second.committed(std::nullopt, Clock::now());
  EXPECT_FALSE(b.has_value());
  EXPECT_FALSE(TryGet(*q)->ok());
  journal_->Commit();
  ASSERT_TRUE(a.has_value() && b.has_value());
  EXPECT_EQ(TryGet(*q)->value().payload, "a");
  EXPECT_EQ(TryGet(*q)->value().payload, "b");
  EXPECT_EQ(q->Stats().total_put, 2u);
}

TEST_F(DurableQueueTest, AFailedWriteRefusesThePutAndGivesItsRoomBack) {
  auto q = Make(/*max_size=*/1);
  const BatchOrigin origin{"producer-1", 1};
  auto& failed = Put(*q, "lost", origin);
  journal_->Commit(Error{Errc::kStorageUnavailable, "storage: disk full"});
  ASSERT_TRUE(failed.has_value());
  EXPECT_EQ(failed->error().code, Errc::kStorageUnavailable);
  EXPECT_EQ(q->Stats().unfinished, 0u);
  // The resend of the same producer sequence is new work, not a repeat.
  auto& resent = Put(*q, "lost", origin);
  ASSERT_EQ(journal_->puts.size(), 1u);
  EXPECT_EQ(journal_->puts.front().keys.producer, "producer-1");
  EXPECT_EQ(journal_->puts.front().keys.sequences,
            (std::vector<std::pair<uint64_t, uint64_t>>{{1, 2}}));
  journal_->Commit();
  ASSERT_TRUE(resent.has_value() && resent->ok());
  EXPECT_EQ(TryGet(*q)->value().payload, "lost");
}

// A repeat of a put whose write is still pending used to be answered at once
// with the original's id: when that write then failed, the repeat had
// confirmed a message that was nowhere. It now waits for the original.
TEST_F(DurableQueueTest, ARepeatOfAPendingPutWaitsForItsOriginal) {
  auto q = Make();
  const BatchOrigin origin{"p", 1};
  auto& original = Put(*q, "m", origin);
  auto& repeat = Put(*q, "m", origin);  // a resend after a reconnect, say
  EXPECT_FALSE(repeat.has_value()) << "answered before the original's write";
  ASSERT_EQ(journal_->puts.size(), 1u) << "the repeat is not written";
  journal_->Commit();
  ASSERT_TRUE(original.has_value() && original->ok());
  ASSERT_TRUE(repeat.has_value() && repeat->ok());
  EXPECT_EQ(repeat->value(), original->value());
  EXPECT_EQ(q->Stats().total_put, 1u);
}

TEST_F(DurableQueueTest, ARepeatOfAPutWhoseWriteFailsIsNewWork) {
  auto q = Make();
  const BatchOrigin origin{"p", 1};
  auto& original = Put(*q, "m", origin);
  auto& repeat = Put(*q, "m", origin);
  journal_->Commit(Error{Errc::kStorageUnavailable, "storage: disk full"});
  ASSERT_TRUE(original.has_value());
  EXPECT_EQ(original->error().code, Errc::kStorageUnavailable);
  EXPECT_FALSE(repeat.has_value()) << "confirmed a message whose write failed";
  ASSERT_EQ(journal_->puts.size(), 1u) << "the repeat is written as new work";
  journal_->Commit();
  ASSERT_TRUE(repeat.has_value() && repeat->ok());
  EXPECT_EQ(TryGet(*q)->value().payload, "m");
  EXPECT_EQ(q->Stats().total_put, 1u);
}

TEST_F(DurableQueueTest, CloseWaitsForPendingPutsBeforeDraining) {
  auto q = Make();
  Put(*q, "a");
  q->Close(now_);
  EXPECT_TRUE(journal_->closed);
  auto get = TryGet(*q);
  EXPECT_EQ(get->error().code, Errc::kQueueEmpty);  // not drained: "a" is on its way
  journal_->Commit();
  EXPECT_TRUE(TryGet(*q)->ok());
}

TEST_F(DurableQueueTest, RestoreBringsMessagesBackInOrderWithTheirDeliveries) {
  auto q = Make(/*max_size=*/0, /*max_deliveries=*/3);
  std::vector<MessagePtr> msgs;
  msgs.push_back(Message::Make(4, "four", {}));
  msgs.push_back(Message::Make(7, "seven", {}));
  msgs.push_back(Message::Make(9, "spent", {}));
  msgs[1]->add_delivery();  // delivered once, never done: at least once
  for (int i = 0; i < 3; ++i) msgs[2]->add_delivery();
  q->Restore(std::move(msgs), 10, /*closed=*/false, {}, now_);
  EXPECT_EQ(journal_->done, std::vector<uint64_t>{9});  // out of deliveries
  auto first = TryGet(*q)->value();
  EXPECT_EQ(first.payload, "four");
  EXPECT_EQ(first.delivery_count, 1u);
  auto second = TryGet(*q)->value();
  EXPECT_EQ(second.payload, "seven");
  EXPECT_EQ(second.delivery_count, 2u);
  Put(*q, "new");
  EXPECT_EQ(journal_->puts.back().ids, std::vector<uint64_t>{10});
}

// Groups are rebuilt from the recovered messages in put order: the one that
// was out (delivered, never done) comes back as its group's first, and the
// group's next waits for it again; a message recovered already expired
// leaves without moving its group on.
TEST_F(DurableQueueTest, RestoreRebuildsGroupsInOrder) {
  auto q = Make();
  const auto grouped = [&](uint64_t id, const std::string& payload, TimePoint expires = kNever) {
    MessageAttrs attrs;
    attrs.group = "g";
    attrs.expires_at = expires;
    return Message::Make(id, payload, {}, attrs);
  };
  std::vector<MessagePtr> msgs;
  msgs.push_back(grouped(3, "first"));
  msgs.push_back(grouped(5, "gone", now_ - seconds(1)));
  msgs.push_back(grouped(6, "second"));
  msgs[0]->add_delivery();
  q->Restore(std::move(msgs), 7, /*closed=*/false, {}, now_);
  EXPECT_EQ(q->Stats().total_expired, 1u);
  auto first = TryGet(*q)->value();
  EXPECT_EQ(first.payload, "first");
  EXPECT_EQ(first.delivery_count, 2u);
  EXPECT_EQ(TryGet(*q)->error().code, Errc::kQueueEmpty);  // "second" waits for "first"
  ASSERT_TRUE(q->TaskDone(first.tag, now_).ok());
  EXPECT_EQ(TryGet(*q)->value().payload, "second");
}

// After a restart, a producer's resend and a repeated dedup id are still
// recognised: the journal kept their keys and Restore takes them back.
TEST_F(DurableQueueTest, RestoredKeysRecogniseResendsAfterARestart) {
  auto q = Make();
  PutKeys keys;
  keys.dedup_ids = {{"order-1", 5}};
  keys.producer = "p";
  keys.sequences = {{1, 5}, {2, 6}};
  q->Restore({}, 7, /*closed=*/false, {keys}, now_);
  auto& repeat = Put(*q, "again", BatchOrigin{"p", 2});
  ASSERT_TRUE(repeat.has_value()) << "a duplicate is answered at once";
  EXPECT_EQ(repeat->value(), 6u);
  auto& fresh = Put(*q, "new", BatchOrigin{"p", 3});
  EXPECT_FALSE(fresh.has_value());
  journal_->Commit();
  EXPECT_EQ(fresh->value(), 7u);
  q->RecordBinding("orders.#", true);
  EXPECT_EQ(journal_->bindings, (std::vector<std::pair<std::string, bool>>{{"orders.#", true}}));
}

TEST_F(DurableQueueTest, DeleteRefusesPendingPutsAndStopsTheJournal) {
  auto q = Make();
  auto& put = Put(*q, "a");
  q->Delete();
  EXPECT_TRUE(journal_->deleted);
  ASSERT_TRUE(put.has_value());
  EXPECT_EQ(put->error().code, Errc::kQueueDeleted);
  journal_->Commit();  // a late confirmation finds nothing to publish
  EXPECT_EQ(q->Stats().size, 0u);
}

}  // namespace
}  // namespace basin::core
