// Producer and Consumer across broken connections: a proxy between them and
// the broker cuts every connection while the broker stays up.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "basin/client.h"
#include "basin/consumer.h"
#include "basin/producer.h"
#include "broker_process.h"
#include "tcp_proxy.h"

namespace basin {
namespace {

using std::chrono::seconds;
using testing::BrokerProcess;
using testing::TcpProxy;

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

}  // namespace
}  // namespace basin
