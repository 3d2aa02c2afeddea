// Batches, idempotent puts and the Produce stream against the real broker.
#include <gtest/gtest.h>

#include <future>
#include <thread>
#include <vector>

#include "basin/client.h"
#include "basin/producer.h"
#include "broker_process.h"

namespace basin {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::BrokerProcess;
using testing::WaitFor;

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

}  // namespace
}  // namespace basin
