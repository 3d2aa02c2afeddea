// Scheduling against the real broker: delayed puts through each way a
// message enters (Put, a batch, the Produce stream).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "basin/client.h"
#include "basin/consumer.h"
#include "basin/producer.h"
#include "broker_process.h"

namespace basin {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::BrokerProcess;
using testing::WaitFor;

TEST(SchedulingTest, ADelayedPutIsUnfinishedAndUnseenUntilItsTime) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("later", {});
  const auto put_at = std::chrono::steady_clock::now();
  q.put({.payload = "in a while", .delay = seconds(2)});
  EXPECT_THROW(q.get_nowait(), Empty);
  const QueueStats s = q.info().stats;
  EXPECT_EQ(s.delayed, 1u);
  EXPECT_EQ(s.size, 0u);
  EXPECT_EQ(s.unfinished, 1u);
  EXPECT_THROW(q.join(milliseconds(0)), JoinTimeout);
  Message m = q.get(seconds(20));  // a blocked get is served when it is due
  EXPECT_EQ(m.payload(), "in a while");
  EXPECT_GE(std::chrono::steady_clock::now() - put_at, seconds(2));
  q.task_done(m);
  q.join(seconds(5));
}

TEST(SchedulingTest, DeliverAtInThePastIsReadyAtOnce) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("past", {});
  q.put({.payload = "late", .deliver_at = std::chrono::system_clock::now() - seconds(5)});
  EXPECT_EQ(q.get_nowait().payload(), "late");
}

TEST(SchedulingTest, ABatchMixesDelayedAndReadyMessagesAndRefusesTooFar) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("mixed", {.max_size = 1});
  // Two delayed messages take no room: the batch fits a queue of one.
  const auto outcomes = q.put_batch({{.payload = "now"},
                                     {.payload = "later", .delay = seconds(2)},
                                     {.payload = "also later", .delay = seconds(2)},
                                     {.payload = "too far", .delay = std::chrono::hours(24 * 31)}});
  ASSERT_EQ(outcomes.size(), 4u);
  EXPECT_TRUE(outcomes[0].ok() && outcomes[1].ok() && outcomes[2].ok());
  EXPECT_EQ(outcomes[3].error_reason, "INVALID_ARGUMENT");
  EXPECT_EQ(q.info().stats.delayed, 2u);
  std::vector<std::string> got;
  while (got.size() < 3) {
    Message m = q.get(seconds(20));
    got.push_back(m.payload());
    q.task_done(m);
  }
  EXPECT_EQ(got, (std::vector<std::string>{"now", "later", "also later"}));
}

TEST(SchedulingTest, AProducerSendsDelayedMessages) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("produced", {});
  Producer producer(client, "produced");
  for (int i = 0; i < 100; ++i) {
    producer.send({.payload = "m" + std::to_string(i), .delay = milliseconds(200)});
  }
  producer.flush();
  EXPECT_EQ(q.info().stats.delayed + q.info().stats.size, 100u);
  std::vector<std::string> got;
  while (got.size() < 100) {
    for (const Message& m : q.get_batch(100, seconds(20))) {
      got.push_back(m.payload());
      q.task_done(m);
    }
  }
  for (int i = 0; i < 100; ++i) EXPECT_EQ(got[static_cast<size_t>(i)], "m" + std::to_string(i));
}

TEST(SchedulingTest, RetryBackoffReleasesAndRejects) {
  BrokerProcess broker;
  Client client(broker.address());
  auto dead = client.queue("retry-dead", {});
  auto q = client.queue("retry", {.dead_letter_queue = "retry-dead",
                                  .retry_backoff = {milliseconds(1500), seconds(3)}});
  EXPECT_EQ(q.info().options.retry_backoff,
            (std::vector<milliseconds>{milliseconds(1500), seconds(3)}));
  q.put("job");
  Message first = q.get(seconds(5));
  const auto released_at = std::chrono::steady_clock::now();
  first.release();  // the backoff's first entry
  EXPECT_EQ(q.info().stats.delayed, 1u);
  EXPECT_THROW(q.get_nowait(), Empty);
  Message second = q.get(seconds(20));
  EXPECT_GE(std::chrono::steady_clock::now() - released_at, milliseconds(1500));
  EXPECT_EQ(second.delivery_count(), 2u);
  second.release(milliseconds(0));  // an explicit zero: at once
  Message third = q.get_nowait();
  third.reject();
  EXPECT_EQ(q.info().stats.unfinished, 0u);
  Message dl = dead.get(seconds(5));
  EXPECT_EQ(dl.headers().at("basin-death-reason"), "rejected");
  EXPECT_EQ(dl.payload(), "job");
}

TEST(SchedulingTest, AConsumerReleasesWithADelayAndRejects) {
  BrokerProcess broker;
  Client client(broker.address());
  auto dead = client.queue("c-dead", {});
  auto q = client.queue("c-retry", {.dead_letter_queue = "c-dead"});
  q.put("later");
  q.put("poison");
  Consumer consumer(client, "c-retry", {.prefetch = 10});
  std::optional<Message> a = consumer.next();
  std::optional<Message> b = consumer.next();
  ASSERT_TRUE(a && b);
  consumer.release(*a, seconds(2));
  consumer.reject(*b);
  EXPECT_EQ(dead.get(seconds(5)).payload(), "poison");
  EXPECT_TRUE(WaitFor([&] { return q.info().stats.delayed == 1; }));
  std::optional<Message> again = consumer.next();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->payload(), "later");
  EXPECT_EQ(again->delivery_count(), 2u);
  consumer.ack(*again);
  consumer.close();
}

TEST(SchedulingTest, ABadRetryBackoffIsRefused) {
  BrokerProcess broker;
  Client client(broker.address());
  std::vector<milliseconds> too_many(33, milliseconds(1));
  EXPECT_THROW(client.queue("many", {.retry_backoff = too_many}), InvalidArgument);
  EXPECT_THROW(client.queue("far", {.retry_backoff = {std::chrono::hours(24 * 31)}}),
               InvalidArgument);
  EXPECT_THROW(client.queue("negative", {.retry_backoff = {milliseconds(-1)}}), InvalidArgument);
  client.queue("fine", {.retry_backoff = {seconds(1)}});
  EXPECT_THROW(client.queue("fine", {.retry_backoff = {seconds(2)}}), AlreadyExists);
}

TEST(SchedulingTest, AnExpiredMessageGoesToTheDeadLetterQueue) {
  BrokerProcess broker;
  Client client(broker.address());
  auto dead = client.queue("ttl-dead", {});
  auto q = client.queue("ttl", {.dead_letter_queue = "ttl-dead", .message_ttl = seconds(60)});
  EXPECT_EQ(q.info().options.message_ttl, seconds(60));
  q.put({.payload = "brief", .ttl = milliseconds(100)});
  q.put("default ttl");
  Message m = dead.get(seconds(20));
  EXPECT_EQ(m.payload(), "brief");
  EXPECT_EQ(m.headers().at("basin-death-reason"), "expired");
  EXPECT_EQ(m.headers().at("basin-original-queue"), "ttl");
  const QueueStats s = q.info().stats;
  EXPECT_EQ(s.total_expired, 1u);
  EXPECT_EQ(s.size, 1u);
  const auto outcomes = q.put_batch({{.payload = "x", .ttl = std::chrono::hours(24 * 366)}});
  EXPECT_EQ(outcomes.at(0).error_reason, "INVALID_ARGUMENT");
}

TEST(SchedulingTest, PrioritiesOrderGetsAndConsumers) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("ranked", {.max_priority = 3});
  EXPECT_EQ(q.info().options.max_priority, 3u);
  q.put({.payload = "low", .priority = 1});
  q.put({.payload = "plain"});
  q.put({.payload = "high", .priority = 3});
  q.put({.payload = "higher than the max", .priority = 9});
  EXPECT_EQ(q.get_nowait().payload(), "high");
  Consumer consumer(client, "ranked", {.prefetch = 1});
  std::vector<std::string> got;
  for (int i = 0; i < 3; ++i) {
    std::optional<Message> m = consumer.next();
    ASSERT_TRUE(m);
    got.push_back(m->payload());
    consumer.ack(*m);
  }
  EXPECT_EQ(got, (std::vector<std::string>{"higher than the max", "low", "plain"}));
  EXPECT_THROW(q.put({.payload = "x", .priority = 11}), InvalidArgument);
  EXPECT_THROW(client.queue("too-many-levels", {.max_priority = 11}), InvalidArgument);
  consumer.close();
}

// Two consumers share three groups: each group's messages are processed in
// put order, one at a time, while the groups go in parallel.
TEST(SchedulingTest, OrderedGroupsAreProcessedInOrderOneAtATime) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("grouped", {});
  constexpr int kPerGroup = 50;
  std::vector<OutgoingMessage> batch;
  for (int i = 0; i < kPerGroup; ++i) {
    for (const char* g : {"a", "b", "c"}) {
      batch.push_back({.payload = std::string(g) + ":" + std::to_string(i), .group = g});
    }
  }
  for (const PutOutcome& o : q.put_batch(batch)) ASSERT_TRUE(o.ok()) << o.error_message;
  EXPECT_EQ(q.info().stats.groups, 3u);
  std::mutex mu;
  std::map<std::string, int> next;  // group -> the number it must see next
  std::atomic<int> done{0};
  std::atomic<bool> broken{false};
  auto work = [&] {
    Consumer consumer(client, "grouped", {.prefetch = 5});
    try {
      while (std::optional<Message> m = consumer.next()) {
        const std::string group = m->payload().substr(0, 1);
        const int n = std::stoi(m->payload().substr(2));
        {
          // Counted before the ack goes out: the broker hands out the
          // group's next message only after it has the ack, so a message
          // seen early or out of order shows here.
          std::lock_guard lock(mu);
          if (n != next[group]) broken = true;
          ++next[group];
        }
        consumer.ack(*m);
        consumer.flush();
        ++done;
      }
    } catch (const Closed&) {
    }
  };
  std::thread one(work);
  std::thread two(work);
  EXPECT_TRUE(WaitFor([&] { return done.load() == 3 * kPerGroup; }));
  q.close();  // both consumers end once the queue is drained
  one.join();
  two.join();
  EXPECT_FALSE(broken.load()) << "a group's messages were processed out of order or together";
  EXPECT_EQ(done.load(), 3 * kPerGroup);
  EXPECT_TRUE(WaitFor([&] { return q.info().stats.groups == 0; }));
}

}  // namespace
}  // namespace basin
