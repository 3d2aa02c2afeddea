// Batches, idempotent puts and the Produce stream against the real broker.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "basin/client.h"
#include "basin/producer.h"
#include "broker_process.h"
#include "returns_within.h"

namespace basin {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::BrokerProcess;
using testing::ReturnsWithin;
using testing::WaitFor;

// Takes `n` messages off `q`, task_doning each: room for a producer.
class Drainer {
 public:
  Drainer(Queue q, size_t n)
      : thread_([this, q, n] {
          while (payloads_.size() < n && !stop_) {
            try {
              for (const Message& m : q.get_batch(100, milliseconds(50))) {
                payloads_.push_back(m.payload());
                q.task_done(m);
              }
            } catch (const Empty&) {
            }
          }
        }) {}
  ~Drainer() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // Once all `n` are taken: their payloads, in order.
  const std::vector<std::string>& Wait() {
    if (thread_.joinable()) thread_.join();
    return payloads_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::string> payloads_;
  std::thread thread_;
};

TEST(ProduceTest, ProducerStallsOnAFullQueueAndLosesNothing) {
  constexpr int kMessages = 5'000;
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("bounded", {.max_size = 100});
  // A long linger: batches go out full (50), whatever the machine's speed,
  // so two fill the queue exactly.
  Producer producer(client, "bounded", {.max_batch_messages = 50, .linger = seconds(10)});
  std::vector<std::future<uint64_t>> ids;
  std::thread sender([&] {
    for (int i = 0; i < kMessages; ++i) ids.push_back(producer.send(std::to_string(i)));
  });
  // The queue fills and a batch waits for room: the broker stopped reading.
  ASSERT_TRUE(WaitFor([&] {
    const QueueStats s = q.info().stats;
    return s.size == 100 && s.waiting_putters == 1;
  }));
  int next = 0;
  while (next < kMessages) {
    for (const Message& m : q.get_batch(64, seconds(20))) {
      ASSERT_EQ(m.payload(), std::to_string(next)) << "order";
      ASSERT_EQ(m.id(), static_cast<uint64_t>(next + 1));
      q.task_done(m);
      ++next;
    }
  }
  sender.join();
  producer.flush();
  for (int i = 0; i < kMessages; ++i) EXPECT_EQ(ids[i].get(), static_cast<uint64_t>(i + 1));
  const QueueStats s = q.info().stats;
  EXPECT_EQ(s.total_put, static_cast<uint64_t>(kMessages));
  EXPECT_EQ(s.unfinished, 0u);
}

TEST(ProduceTest, ABatchSizeAboveTheBrokersCapIsTakenAsTheCap) {
  // The broker refuses a request of more than 10,000 messages: a producer
  // asked for larger batches must never build one.
  constexpr int kMessages = 25'000;
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("q", {});
  Producer producer(client, "q", {.max_batch_messages = 1'000'000, .linger = seconds(10)});
  std::vector<std::future<uint64_t>> ids;
  ids.reserve(kMessages);
  for (int i = 0; i < kMessages; ++i) ids.push_back(producer.send("m"));
  producer.flush();
  for (int i = 0; i < kMessages; ++i) ASSERT_EQ(ids[i].get(), static_cast<uint64_t>(i + 1));
  EXPECT_EQ(q.info().stats.size, static_cast<uint64_t>(kMessages));
}

TEST(ProduceTest, ProducerReportsInvalidMessagesAndMissingQueues) {
  BrokerProcess broker({"--max-message-bytes", "1KiB"});
  Client client(broker.address());
  client.queue("q", {});
  {
    Producer producer(client, "q");
    auto ok = producer.send("fine");
    auto big = producer.send(std::string(5000, 'x'));
    auto reserved = producer.send(OutgoingMessage{"x", {{"basin-topic", "forged"}}, {}});
    EXPECT_EQ(ok.get(), 1u);
    EXPECT_THROW(big.get(), MessageTooLarge);
    EXPECT_THROW(reserved.get(), InvalidArgument);
  }
  Producer nowhere(client, "nosuch");
  EXPECT_THROW(nowhere.send("x").get(), NotFound);
}

TEST(ProduceTest, DedupIdsAreAnsweredWithTheOriginalId) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("q", {});
  const std::vector<OutgoingMessage> batch = {
      {"a", {}, "order-1"}, {"b", {}, "order-2"}, {"c", {}, ""}};
  auto first = q.put_batch(batch);
  auto again = q.put_batch(batch);  // a retry after a lost answer
  ASSERT_EQ(again.size(), 3u);
  EXPECT_EQ(again[0].message_id, first[0].message_id);
  EXPECT_TRUE(again[0].duplicate);
  EXPECT_EQ(again[1].message_id, first[1].message_id);
  EXPECT_FALSE(again[2].duplicate);  // no dedup id: a second copy
  EXPECT_EQ(q.qsize(), 4u);
  // Through a Producer too.
  Producer producer(client, "q");
  EXPECT_EQ(producer.send(OutgoingMessage{"a", {}, "order-1"}).get(), first[0].message_id);
  EXPECT_EQ(q.info().stats.total_put, 4u);
}

TEST(ProduceTest, BatchPutIsAllOrNothingAndBatchGetTakesWhatIsReady) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("q", {.max_size = 3});
  std::vector<OutgoingMessage> four(4, OutgoingMessage{"m", {}, {}});
  EXPECT_THROW(q.put_batch(four), InvalidArgument);  // can never fit
  q.put("first");
  std::vector<OutgoingMessage> three(3, OutgoingMessage{"m", {}, {}});
  EXPECT_THROW(q.put_batch(three, milliseconds(100)), Full);
  EXPECT_EQ(q.qsize(), 1u);  // nothing of the batch went in
  auto outcomes = q.put_batch({{"x", {}, {}}, {"y", {}, {}}});
  EXPECT_EQ(outcomes[1].message_id, 3u);
  auto got = q.get_batch(10, seconds(5));
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].payload(), "first");
  EXPECT_EQ(got[2].payload(), "y");
  for (const Message& m : got) q.task_done(m);
  EXPECT_THROW(q.get_batch(10, milliseconds(50)), Empty);
}

// A burst larger than a bounded queue could ever hold in one batch is split
// into batches the queue can take (max_size, max_bytes), instead of being
// refused whole; a message larger than max_bytes still fails, alone.
TEST(ProduceTest, BurstIntoASmallQueueIsSplitIntoBatchesThatFit) {
  BrokerProcess broker;
  Client client(broker.address());
  auto counted = client.queue("counted", {.max_size = 3});
  auto sized = client.queue("sized", {.max_bytes = 100});
  // A long linger: unless clamped, each burst goes out as one batch at flush().
  Producer by_count(client, "counted", {.linger = seconds(60)});
  Producer by_bytes(client, "sized", {.linger = seconds(60)});
  std::vector<std::future<uint64_t>> counted_ids, sized_ids;
  for (int i = 0; i < 20; ++i) counted_ids.push_back(by_count.send(std::to_string(i)));
  for (int i = 0; i < 10; ++i) {
    if (i == 4) sized_ids.push_back(by_bytes.send(std::string(150, 'x')));  // > max_bytes
    sized_ids.push_back(by_bytes.send(std::string(30, static_cast<char>('a' + i))));
  }
  Drainer drain_counted(counted, 20), drain_sized(sized, 10);
  by_count.flush();
  by_bytes.flush();
  for (int i = 0; i < 20; ++i) EXPECT_EQ(counted_ids[i].get(), static_cast<uint64_t>(i + 1));
  uint64_t next_id = 1;
  for (size_t i = 0; i < sized_ids.size(); ++i) {
    if (i == 4) {
      EXPECT_THROW(sized_ids[i].get(), MessageTooLarge);
    } else {
      EXPECT_EQ(sized_ids[i].get(), next_id++);
    }
  }
  const std::vector<std::string>& got = drain_counted.Wait();
  ASSERT_EQ(got.size(), 20u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(got[i], std::to_string(i)) << "order";
  EXPECT_EQ(drain_sized.Wait().size(), 10u);
}

// An error that is not about the queue itself (here: the queue's cap on
// blocked putters) fails the batch it answered; the producer goes on.
TEST(ProduceTest, AFailedBatchFailsOnlyItsOwnMessages) {
  BrokerProcess broker({"--max-waiters-per-queue", "1"});
  Client client(broker.address());
  auto q = client.queue("q", {.max_size = 1});
  q.put("filler");
  Producer waiting(client, "q");
  auto first = waiting.send("first");
  ASSERT_TRUE(WaitFor([&] { return q.info().stats.waiting_putters == 1; }));
  Producer refused(client, "q");
  EXPECT_THROW(refused.send("refused").get(), TooManyWaiters);
  q.task_done(q.get(seconds(5)));  // room for "first"
  EXPECT_EQ(first.get(), 2u);
  q.task_done(q.get(seconds(5)));
  EXPECT_EQ(refused.send("later").get(), 3u) << "the earlier error stuck to the producer";
  EXPECT_EQ(q.get(seconds(5)).payload(), "later");
}

// A deleted queue is the one error that lasts: what was unconfirmed fails, and
// so does every later send, even once a queue of that name exists again.
TEST(ProduceTest, ADeletedQueueFailsEverySendThatFollows) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("q", {.max_size = 1});
  q.put("filler");
  Producer producer(client, "q");
  auto waiting = producer.send("waiting");
  ASSERT_TRUE(WaitFor([&] { return q.info().stats.waiting_putters == 1; }));
  client.delete_queue("q");
  EXPECT_THROW(waiting.get(), NotFound);
  EXPECT_THROW(producer.send("after").get(), NotFound);
  client.queue("q", {});
  EXPECT_THROW(producer.send("recreated").get(), NotFound);
  producer.flush();  // nothing unconfirmed: returns at once
}

// The broker stops reading while a batch waits for room; destroying the
// producer then waits a bounded time, fails what is unconfirmed and returns.
TEST(ProduceTest, DestructorIsBoundedWhileTheQueueStaysFull) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("q", {.max_size = 1});
  q.put("filler");
  auto producer = std::make_unique<Producer>(client, "q");
  auto stuck = producer->send("stuck");
  ASSERT_TRUE(WaitFor([&] { return q.info().stats.waiting_putters == 1; }));
  auto destroyed = std::async(std::launch::async, [&] { producer.reset(); });
  const bool bounded = destroyed.wait_for(seconds(10)) == std::future_status::ready;
  if (!bounded) q.task_done(q.get(seconds(5)));  // let an unbounded destructor end
  destroyed.get();
  EXPECT_TRUE(bounded) << "~Producer waited for a queue that stayed full";
  EXPECT_THROW(stuck.get(), Error);
  // The broker dropped the batch with the stream: nothing of it went in.
  ASSERT_TRUE(WaitFor([&] { return q.info().stats.waiting_putters == 0; }));
  EXPECT_EQ(q.info().stats.total_put, 1u);
}

TEST(ProduceTest, AThrowingConfirmCallbackIsContained) {
  BrokerProcess broker;
  Client client(broker.address());
  client.queue("q", {});
  Producer producer(client, "q");
  producer.send("a",
                [](uint64_t, std::exception_ptr) { throw std::runtime_error("callback bug"); });
  auto after = producer.send("b");
  EXPECT_EQ(after.get(), 2u) << "the producer goes on after a callback threw";
  producer.flush();
}

// flush() in a confirm callback would wait for its own confirm: it fails at
// once. send() in a callback never waits for room, so it cannot deadlock.
TEST(ProduceTest, CallbacksMaySendButNotFlush) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("q", {});
  // One message a batch, one batch in flight: a send that waited for room in a
  // callback would wait for the callback's own thread.
  auto producer = std::make_unique<Producer>(
      client, "q", ProducerOptions{.max_batch_messages = 1, .max_in_flight_batches = 1});
  auto flush_refused = std::make_shared<std::atomic<bool>>(false);
  auto chained = std::make_shared<std::atomic<int>>(0);
  Producer* p = producer.get();
  p->send("first", [p, flush_refused, chained](uint64_t, std::exception_ptr) {
    try {
      p->flush();
    } catch (const std::logic_error&) {
      *flush_refused = true;
    }
    for (int i = 0; i < 5; ++i) {
      p->send("chained", [chained](uint64_t, std::exception_ptr error) {
        if (!error) ++*chained;
      });
    }
  });
  if (!ReturnsWithin(seconds(10), [p] { p->flush(); })) {
    producer.release();  // deadlocked: leave it, and its threads, behind
    FAIL() << "flush() or send() in a confirm callback deadlocked";
  }
  EXPECT_TRUE(*flush_refused);
  ASSERT_TRUE(WaitFor([&] { return *chained == 5; }));
  EXPECT_EQ(q.info().stats.total_put, 6u);
}

// Under steady load flush() must return: it waits for what was sent before
// it was called, not for everything sent since.
TEST(ProduceTest, FlushWaitsOnlyForMessagesSentBeforeIt) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("q", {.max_size = 1});
  q.put("filler");
  Producer producer(client, "q", {.linger = std::chrono::hours(1)});
  auto before = producer.send("before");
  auto flushed = std::async(std::launch::async, [&] { producer.flush(); });
  // The linger is an hour: only flush() sends "before", which waits for room.
  ASSERT_TRUE(WaitFor([&] { return q.info().stats.waiting_putters == 1; }));
  auto after = producer.send("after");
  q.task_done(q.get(seconds(5)));  // room for one: "before" goes in, the queue is full again
  const bool returned = flushed.wait_for(seconds(10)) == std::future_status::ready;
  if (!returned) q.task_done(q.get(seconds(5)));  // room for "after": an old flush() returns
  flushed.get();
  EXPECT_TRUE(returned) << "flush() waited for a message sent after it was called";
  EXPECT_EQ(before.get(), 2u);
  if (returned) q.task_done(q.get(seconds(5)));
  producer.flush();
  EXPECT_EQ(after.get(), 3u);
}

}  // namespace
}  // namespace basin
