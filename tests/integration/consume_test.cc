// The Consume stream against the real broker: prefetch, redelivery when a
// stream ends, fairness, mixing with unary clients, exactly-once at scale.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "basin/client.h"
#include "basin/consumer.h"
#include "basin/producer.h"
#include "broker_process.h"
#include "returns_within.h"

namespace basin {
namespace {

using std::chrono::seconds;
using testing::BrokerProcess;
using testing::Process;
using testing::ReturnsWithin;
using testing::WaitFor;

TEST(ConsumeTest, PrefetchIsNeverExceeded) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("q", {});
  for (int i = 0; i < 100; ++i) q.put(std::to_string(i));
  Consumer consumer(client, "q", {.prefetch = 10});
  std::vector<Message> held;
  for (int i = 0; i < 10; ++i) held.push_back(*consumer.next());
  // The broker's own counters: ten out, none more, however long we hold them.
  ASSERT_TRUE(WaitFor([&] { return q.info().stats.consumers.size() == 1; }));
  QueueStats s = q.info().stats;
  EXPECT_EQ(s.consumers[0].in_flight, 10u);
  EXPECT_EQ(s.consumers[0].delivered, 10u);
  EXPECT_EQ(s.consumers[0].prefetch, 10u);
  EXPECT_EQ(s.size, 90u);
  for (const Message& m : held) consumer.ack(m);
  consumer.flush();
  std::vector<std::string> next;
  for (int i = 0; i < 10; ++i) next.push_back(consumer.next()->payload());
  EXPECT_EQ(next.front(), "10");
  EXPECT_EQ(next.back(), "19");
  s = q.info().stats;
  EXPECT_EQ(s.consumers[0].delivered, 20u);
  EXPECT_EQ(s.consumers[0].acked, 10u);
  EXPECT_EQ(s.total_done, 10u);
}

void ExpectHeldMessagesRedeliveredAfter(int signal) {
  BrokerProcess broker({"--keepalive-time", "1s", "--keepalive-timeout", "1s"});
  Client client(broker.address());
  auto q = client.queue("q", {});
  for (int i = 0; i < 50; ++i) q.put(std::to_string(i));
  Process worker(testing::WorkerPath(), {broker.address(), "q", "consume"});
  ASSERT_EQ(worker.ReadLine(seconds(20)).value_or(""), "held");
  // Five acked freed five credits: the stream holds 20 again (15 + 5 new).
  ASSERT_TRUE(WaitFor([&] {
    const QueueStats s = q.info().stats;
    return s.total_done == 5 && s.in_flight == 20;
  }));
  worker.Signal(signal);
  // SIGKILL closes the connection; SIGSTOP is found by unanswered keepalives.
  ASSERT_TRUE(WaitFor([&] { return q.info().stats.in_flight == 0; }, seconds(30)));
  const QueueStats s = q.info().stats;
  EXPECT_TRUE(s.consumers.empty());
  EXPECT_EQ(s.size, 45u);
  EXPECT_EQ(s.total_redelivered, 20u);
  // Exactly the 20 it held come first, in order, with a second delivery count.
  for (int i = 5; i < 25; ++i) {
    Message m = q.get_nowait();
    EXPECT_EQ(m.payload(), std::to_string(i));
    EXPECT_EQ(m.delivery_count(), 2u);
  }
  EXPECT_EQ(q.get_nowait().delivery_count(), 1u);
  worker.Signal(SIGKILL);
}

TEST(ConsumeTest, KilledStreamRedeliversExactlyTheUnackedSet) {
  ExpectHeldMessagesRedeliveredAfter(SIGKILL);
}

TEST(ConsumeTest, FrozenConsumerIsFoundByKeepaliveAndItsPrefetchRedelivered) {
  ExpectHeldMessagesRedeliveredAfter(SIGSTOP);
}

TEST(ConsumeTest, FourConsumersShareTheQueue) {
  constexpr int kMessages = 4'000;
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("q", {});
  std::vector<OutgoingMessage> batch(kMessages, OutgoingMessage{"m", {}, {}});
  q.put_batch(batch);
  q.close();
  std::vector<int> counts(4, 0);
  std::vector<std::thread> threads;
  for (int c = 0; c < 4; ++c) {
    threads.emplace_back([&, c] {
      Consumer consumer(Client(broker.address()), "q", {.prefetch = 10});
      try {
        while (auto m = consumer.next()) {
          ++counts[c];
          consumer.ack(*m);
        }
      } catch (const Closed&) {
      }
    });
  }
  for (auto& t : threads) t.join();
  int total = 0;
  for (int c = 0; c < 4; ++c) {
    total += counts[c];
    EXPECT_GE(counts[c], kMessages / 10) << "consumer " << c << " starved";
  }
  EXPECT_EQ(total, kMessages);
}

TEST(ConsumeTest, StreamAndUnaryClientsMixOnOneQueue) {
  constexpr int kMessages = 2'000;
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("q", {});
  std::vector<std::atomic<int>> seen(kMessages);
  std::atomic<int> wrong_queue{0};  // messages whose queue() is not "q"
  std::thread streamer([&] {
    Consumer consumer(Client(broker.address()), "q", {.prefetch = 50});
    try {
      while (auto m = consumer.next()) {
        ++seen[std::stoi(m->payload())];
        if (m->queue() != "q") ++wrong_queue;
        consumer.ack(*m);
      }
    } catch (const Closed&) {
    }
  });
  std::thread unary([&] {
    auto mine = Client(broker.address()).queue("q");
    try {
      for (;;) {
        Message m = mine.get();
        ++seen[std::stoi(m.payload())];
        if (m.queue() != "q") ++wrong_queue;
        mine.task_done(m);
      }
    } catch (const Closed&) {
    }
  });
  Producer producer(client, "q");
  for (int i = 0; i < kMessages; ++i) producer.send(std::to_string(i));
  producer.flush();
  q.join();
  q.close();
  streamer.join();
  unary.join();
  for (int i = 0; i < kMessages; ++i) EXPECT_EQ(seen[i].load(), 1) << i;
  EXPECT_EQ(wrong_queue.load(), 0);
  EXPECT_EQ(Message().queue(), "") << "a Message no queue delivered";
  Queue moved = std::move(q);
  EXPECT_EQ(q.name(), "") << "a moved-from Queue";  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(moved.name(), "q");
}

TEST(ConsumeTest, AckTimeoutRequeuesAndExtendKeepsAMessage) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("q", {});
  q.put("kept");
  q.put("dropped");
  Consumer consumer(client, "q", {.prefetch = 2, .ack_timeout = std::chrono::milliseconds(500)});
  const Message kept = *consumer.next();
  const Message dropped = *consumer.next();
  ASSERT_EQ(kept.payload(), "kept");
  ASSERT_EQ(dropped.payload(), "dropped");
  // "kept" is extended on every poll; "dropped" times out, goes back, comes
  // to this consumer again and times out again.
  ASSERT_TRUE(WaitFor([&] {
    consumer.extend(kept);
    return q.info().stats.total_redelivered >= 2;
  }));
  // Still held under its first tag: the ack counts (an expired tag would not).
  consumer.ack(kept);
  consumer.flush();
  ASSERT_TRUE(WaitFor([&] { return q.info().stats.total_done == 1; }));
  const Message again = *consumer.next();
  EXPECT_EQ(again.payload(), "dropped");
  EXPECT_GE(again.delivery_count(), 2u);
  EXPECT_GE(consumer.expired(), 1u) << "expiries are reported on the stream";
}

TEST(ConsumeTest, CallbackFormAcksWhatItHandlesAndReleasesWhatThrows) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("q", {});
  for (int i = 0; i < 10; ++i) q.put(std::to_string(i));
  Consumer consumer(client, "q", {.prefetch = 1});
  std::vector<std::string> handled;
  EXPECT_THROW(consumer.run([&](const Message& m) {
    if (m.payload() == "3") throw std::runtime_error("cannot handle 3");
    handled.push_back(m.payload());
  }),
               std::runtime_error);
  EXPECT_EQ(handled, (std::vector<std::string>{"0", "1", "2"}));
  // 3 went back to the head of the queue; the rest follow, and run() returns
  // once the closed queue is drained.
  q.close();
  consumer.run([&](const Message& m) { handled.push_back(m.payload()); });
  EXPECT_EQ(handled.size(), 10u);
  EXPECT_EQ(handled[3], "3");
  EXPECT_EQ(handled.back(), "9");
  const QueueStats s = q.info().stats;
  EXPECT_EQ(s.total_done, 10u);
  EXPECT_EQ(s.unfinished, 0u);
}

TEST(ConsumeTest, EightStreamProducersEightStreamConsumersExactlyOnce) {
  constexpr int kProducers = 8, kConsumers = 8, kPerProducer = 25'000;
  constexpr int kTotal = kProducers * kPerProducer;
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("load", {.max_size = 10'000});
  std::vector<std::atomic<uint8_t>> seen(kTotal);
  std::atomic<int> duplicates{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < kConsumers; ++c) {
    threads.emplace_back([&] {
      Consumer consumer(Client(broker.address()), "load", {.prefetch = 500, .ack_batch = 100});
      try {
        while (auto m = consumer.next()) {
          if (seen[std::stoi(m->payload())].fetch_add(1) != 0) ++duplicates;
          consumer.ack(*m);
        }
      } catch (const Closed&) {
      }
    });
  }
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      Producer producer(Client(broker.address()), "load");
      for (int i = 0; i < kPerProducer; ++i) producer.send(std::to_string(p * kPerProducer + i));
      producer.flush();
    });
  }
  for (auto& t : producers) t.join();
  q.join();
  q.close();
  for (auto& t : threads) t.join();
  EXPECT_EQ(duplicates.load(), 0);
  int missing = 0;
  for (auto& s : seen) missing += s.load() == 0;
  EXPECT_EQ(missing, 0);
  EXPECT_EQ(q.info().stats.total_done, static_cast<uint64_t>(kTotal));
}

// The destructor sends the acks still batched, half-closes and lets the
// broker end the stream, so the acks are applied before the stream's held
// messages go back: nothing acked is delivered again.
TEST(ConsumeTest, DestroyedConsumerKeepsItsLastAcks) {
  constexpr int kRounds = 20, kPerRound = 10;
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("q", {});
  for (int round = 0; round < kRounds; ++round) {
    q.put_batch(std::vector<OutgoingMessage>(kPerRound, OutgoingMessage{"m", {}, {}}));
    Consumer consumer(client, "q", {.prefetch = kPerRound, .ack_batch = 1000});
    for (int i = 0; i < kPerRound; ++i) consumer.ack(*consumer.next());
  }
  ASSERT_TRUE(WaitFor([&] { return q.info().stats.consumers.empty(); }));
  const QueueStats s = q.info().stats;
  EXPECT_EQ(s.total_redelivered, 0u) << "acks were lost when a consumer was destroyed";
  EXPECT_EQ(s.total_done, static_cast<uint64_t>(kRounds * kPerRound));
  EXPECT_EQ(s.unfinished, 0u);
}

TEST(ConsumeTest, CloseAppliesPendingAcksAndEndsTheStream) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("q", {});
  for (int i = 0; i < 5; ++i) q.put(std::to_string(i));
  Consumer consumer(client, "q", {.prefetch = 5, .ack_batch = 1000});
  const Message first = *consumer.next();
  const Message second = *consumer.next();
  consumer.ack(first);
  consumer.close();
  EXPECT_FALSE(consumer.next().has_value()) << "next() after close()";
  consumer.ack(second);  // no stream any more: nothing happens
  consumer.close();      // twice is fine
  const QueueStats s = q.info().stats;
  EXPECT_TRUE(s.consumers.empty()) << "the stream ended when close() returned";
  EXPECT_EQ(s.total_done, 1u);
  EXPECT_EQ(s.size, 4u) << "what the stream held and did not ack went back";
}

// Tags are per stream: consumer B's delivery 1 and consumer A's delivery 1
// carry the same number. Acking A's message through B is refused rather than
// acking B's own delivery.
TEST(ConsumeTest, AMessageIsAckedOnlyThroughItsOwnConsumer) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("q", {});
  q.put("a");
  q.put("b");
  q.put("unary");
  Consumer a(client, "q", {.prefetch = 1});
  const Message from_a = *a.next();
  Consumer b(client, "q", {.prefetch = 1});
  const Message from_b = *b.next();
  const Message from_get = q.get(seconds(5));
  EXPECT_THROW(b.ack(from_a), std::invalid_argument);
  EXPECT_THROW(b.release(from_a), std::invalid_argument);
  EXPECT_THROW(b.extend(from_a), std::invalid_argument);
  EXPECT_THROW(b.ack(from_get), std::invalid_argument);
  b.flush();
  a.ack(from_a);
  a.flush();
  ASSERT_TRUE(WaitFor([&] { return q.info().stats.total_done == 1; }));
  // B still holds its own delivery, unacked; it acks it itself.
  EXPECT_EQ(q.info().stats.in_flight, 2u);
  b.ack(from_b);
  b.flush();
  ASSERT_TRUE(WaitFor([&] { return q.info().stats.total_done == 2; }));
  q.task_done(from_get);
}

// cancel() is how a caller ends a consumer stuck on a broker that stopped
// reading, so it must not wait for the write that is stuck.
TEST(ConsumeTest, CancelEndsAWriteBlockedOnAFrozenBroker) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("q", {});
  q.put("m");
  Consumer consumer(client, "q", {.prefetch = 1, .ack_batch = 10'000});
  const Message m = *consumer.next();
  ASSERT_EQ(kill(broker.pid(), SIGSTOP), 0);
  // Requests of 10,000 acks each fill the connection's buffers; then a write
  // blocks, holding the consumer's stream.
  std::atomic<uint64_t> acks{0};
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    while (!stop) {
      consumer.ack(m);
      acks.fetch_add(1);
    }
  });
  uint64_t seen = acks.load();
  auto still_since = std::chrono::steady_clock::now();
  const auto give_up = still_since + seconds(60);
  while (std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const uint64_t now_seen = acks.load();
    if (now_seen != seen) {
      seen = now_seen;
      still_since = std::chrono::steady_clock::now();
    } else if (std::chrono::steady_clock::now() - still_since > std::chrono::milliseconds(500)) {
      break;
    }
  }
  ASSERT_LT(std::chrono::steady_clock::now(), give_up) << "the writes never blocked";
  const bool returned = ReturnsWithin(seconds(10), [&] { consumer.cancel(); });
  stop = true;
  kill(broker.pid(), SIGCONT);
  writer.join();
  EXPECT_TRUE(returned) << "cancel() waited for the blocked write";
}

}  // namespace
}  // namespace basin
