// Producer and Consumer across broken connections: a proxy between them and
// the broker cuts every connection while the broker stays up.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "basin/client.h"
#include "basin/consumer.h"
#include "basin/producer.h"
#include "broker_process.h"
#include "tcp_proxy.h"
#include "temp_dir.h"

namespace basin {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::BrokerProcess;
using testing::TcpProxy;
using testing::TempDir;
using testing::WaitFor;

TEST(ReconnectTest, ProducerResendsAcrossCutsAndNothingIsEnqueuedTwice) {
  constexpr int kMessages = 30'000;
  BrokerProcess broker;
  TcpProxy proxy(broker.address());
  Client direct(broker.address());
  auto q = direct.queue("work", {});
  std::atomic<int> confirmed{0}, failed{0};
  {
    Producer producer(Client(proxy.address()), "work", {.max_batch_messages = 100});
    for (int i = 0; i < kMessages; ++i) {
      producer.send(std::to_string(i), [&](uint64_t, std::exception_ptr error) {
        const int n = ++(error ? failed : confirmed);
        // Cut while batches are in flight: some confirms are lost with the
        // connection, and the producer resends those batches.
        if (!error && (n == 5'000 || n == 15'000 || n == 25'000)) proxy.CutAll();
      });
    }
    producer.flush();
  }
  EXPECT_EQ(confirmed, kMessages);
  EXPECT_EQ(failed, 0);
  EXPECT_GE(proxy.accepted(), 4) << "the producer reconnected after each cut";
  const QueueStats s = q.info().stats;
  EXPECT_EQ(s.total_put, static_cast<uint64_t>(kMessages)) << "a resend was enqueued again";
  EXPECT_EQ(s.size, static_cast<uint64_t>(kMessages));
  for (int next = 0; next < kMessages;) {
    for (const Message& m : q.get_batch(1000, seconds(5))) {
      ASSERT_EQ(m.payload(), std::to_string(next++)) << "order";
      q.task_done(m);
    }
  }
}

// With linger 0 a send() that finds nothing unconfirmed writes its own
// message, and the sender thread writes what arrives meanwhile. First three
// threads send at once, one of them waiting for each confirm (so both paths
// write, interleaved); then that thread alone, where each message goes the
// caller's way, with cuts between its own sends. Each thread's order must
// hold and nothing may be enqueued twice.
TEST(ReconnectTest, LingerZeroProducerKeepsOrderAcrossThreadsAndCuts) {
  constexpr int kThreads = 3;
  constexpr int kPerThread = 3'000;
  constexpr int kAlone = 600;  // thread 0's second phase
  BrokerProcess broker;
  TcpProxy proxy(broker.address());
  Client direct(broker.address());
  auto q = direct.queue("work", {});
  std::atomic<int> confirmed{0}, failed{0};
  {
    Producer producer(Client(proxy.address()), "work", {.linger = milliseconds(0)});
    auto on_confirm = [&](uint64_t, std::exception_ptr error) {
      const int n = ++(error ? failed : confirmed);
      if (!error && (n == 2'000 || n == 6'000)) proxy.CutAll();
    };
    // Thread 0: one message at a time, waiting for its confirm.
    auto one_by_one = [&](int from, int to, int cut_every) {
      for (int i = from; i < to; ++i) {
        std::future<uint64_t> id = producer.send("0:" + std::to_string(i));
        id.get();  // a failure fails the test with the exception
        ++confirmed;
        if (cut_every > 0 && (i + 1) % cut_every == 0) proxy.CutAll();
      }
    };
    std::vector<std::thread> senders;
    senders.emplace_back([&] { one_by_one(0, kPerThread, 0); });
    for (int t = 1; t < kThreads; ++t) {
      senders.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          producer.send(std::to_string(t) + ":" + std::to_string(i), on_confirm);
        }
      });
    }
    for (std::thread& t : senders) t.join();
    producer.flush();
    one_by_one(kPerThread, kPerThread + kAlone, 150);
  }
  const int total = kThreads * kPerThread + kAlone;
  EXPECT_EQ(confirmed, total);
  EXPECT_EQ(failed, 0);
  // Each of thread 0's four cuts comes right after a confirm, on a live
  // connection; the first phase's may land while it reconnects anyway.
  EXPECT_GE(proxy.accepted(), 5) << "the producer reconnected after thread 0's cuts";
  const QueueStats s = q.info().stats;
  EXPECT_EQ(s.total_put, static_cast<uint64_t>(total)) << "a resend was enqueued again";
  EXPECT_EQ(s.size, static_cast<uint64_t>(total));
  std::vector<int> next(kThreads, 0);
  for (int taken = 0; taken < total;) {
    for (const Message& m : q.get_batch(1000, seconds(5))) {
      const size_t colon = m.payload().find(':');
      const int t = std::stoi(m.payload().substr(0, colon));
      ASSERT_EQ(std::stoi(m.payload().substr(colon + 1)), next[t]++) << "order of thread " << t;
      q.task_done(m);
      ++taken;
    }
  }
}

TEST(ReconnectTest, ConsumerReconnectsAndOnlyWhatItHeldComesAgain) {
  constexpr int kMessages = 20'000;
  constexpr uint32_t kPrefetch = 100;
  BrokerProcess broker;
  TcpProxy proxy(broker.address());
  Client direct(broker.address());
  auto q = direct.queue("work", {});
  for (int i = 0; i < kMessages; i += 1000) {
    std::vector<OutgoingMessage> batch;
    for (int j = i; j < i + 1000; ++j) batch.push_back({std::to_string(j), {}, {}});
    q.put_batch(std::move(batch));
  }
  q.close();
  std::map<std::string, int> seen;
  Consumer consumer(Client(proxy.address()), "work", {.prefetch = kPrefetch, .ack_batch = 10});
  int received = 0;
  try {
    while (auto m = consumer.next()) {
      ++seen[m->payload()];
      consumer.ack(*m);
      ++received;
      if (received == 5'000 || received == 12'000) proxy.CutAll();
    }
  } catch (const Closed&) {
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kMessages)) << "every message arrived";
  EXPECT_EQ(consumer.reconnects(), 2u);
  // What comes again is at most what the stream held at each cut.
  EXPECT_LE(received - kMessages, static_cast<int>(2 * kPrefetch));
  const QueueStats s = q.info().stats;
  EXPECT_EQ(s.unfinished, 0u);
  EXPECT_EQ(s.total_done, static_cast<uint64_t>(kMessages));
}

// The broker is gone with a batch unconfirmed, so the producer is
// reconnecting (for 30 s by default) when it is destroyed: the destructor
// stops that, fails the batch and returns.
TEST(ReconnectTest, ProducerDestroyedWhileReconnectingReturnsPromptly) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("q", {.max_size = 1});
  q.put("filler");
  auto producer = std::make_unique<Producer>(client, "q");
  auto stuck = producer->send("stuck");
  ASSERT_TRUE(WaitFor([&] { return q.info().stats.waiting_putters == 1; }));
  broker.Kill();
  auto destroyed = std::async(std::launch::async, [&] { producer.reset(); });
  const bool bounded = destroyed.wait_for(seconds(10)) == std::future_status::ready;
  destroyed.get();
  EXPECT_TRUE(bounded) << "~Producer kept reconnecting";
  EXPECT_THROW(stuck.get(), Error);
}

// When reconnect_for runs out the unconfirmed messages fail, but the producer
// is not finished: once the broker is back, later sends go through.
TEST(ReconnectTest, ProducerWorksAgainAfterItsReconnectTimeRanOut) {
  auto broker = std::make_unique<BrokerProcess>();
  const std::string address = broker->address();
  Client client(address);
  client.queue("q", {});
  Producer producer(client, "q", {.reconnect_for = milliseconds(200)});
  EXPECT_EQ(producer.send("before").get(), 1u);
  broker->Kill();
  EXPECT_THROW(producer.send("lost").get(), Unavailable);
  broker = std::make_unique<BrokerProcess>(std::vector<std::string>{"--listen", address});
  // The queue was in memory: make it again, over the producer's own channel.
  ASSERT_TRUE(WaitFor([&] { return client.healthy(); }));
  auto q = client.queue("q", {});
  EXPECT_EQ(producer.send("after").get(), 1u) << "the producer stayed failed";
  EXPECT_EQ(q.get(seconds(5)).payload(), "after");
}

// A producer opened while the broker is away cannot read the queue's bounds
// then: its first batch is refused as one that can never fit, and the
// producer reads the bounds, cuts the batch to them and resends.
TEST(ReconnectTest, ProducerThatMissedTheQueueBoundsCutsARefusedBatch) {
  TempDir tmp;
  const std::string data = tmp.Sub("data");
  auto broker = std::make_unique<BrokerProcess>(std::vector<std::string>{"--data-dir", data});
  const std::string address = broker->address();
  Client client(address);
  client.queue("small", {.max_size = 3, .durable = true});
  broker->Stop();
  // One batch of 20, sent once all 20 are there.
  Producer producer(client, "small", {.max_batch_messages = 20, .linger = seconds(60)});
  std::vector<std::future<uint64_t>> ids;
  for (int i = 0; i < 20; ++i) ids.push_back(producer.send(std::to_string(i)));
  broker = std::make_unique<BrokerProcess>(
      std::vector<std::string>{"--listen", address, "--data-dir", data});
  ASSERT_TRUE(WaitFor([&] { return client.healthy(); }));
  auto q = client.queue("small");
  std::vector<std::string> got;
  while (got.size() < 20) {
    for (const Message& m : q.get_batch(20, seconds(20))) {
      got.push_back(m.payload());
      q.task_done(m);
    }
  }
  producer.flush();
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(got[static_cast<size_t>(i)], std::to_string(i)) << "order";
    EXPECT_EQ(ids[static_cast<size_t>(i)].get(), static_cast<uint64_t>(i + 1));
  }
}

}  // namespace
}  // namespace basin
