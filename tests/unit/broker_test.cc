#include "broker/core/broker.h"

#include <gtest/gtest.h>

#include "broker/core/delivery_tag.h"

namespace basin::core {
namespace {

using std::chrono::seconds;

QueueConfig Config(const std::string& name, uint64_t max_size = 0) {
  QueueConfig c;
  c.name = name;
  c.max_size = max_size;
  return c;
}

TEST(BrokerTest, CreateIsIdempotentForTheSameSettings) {
  Broker b(BrokerLimits{}, nullptr);
  auto first = b.CreateQueue(Config("q", 3));
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(first.value().created);
  EXPECT_EQ(first.value().queue->config().visibility_timeout, seconds(30));
  auto again = b.CreateQueue(Config("q", 3));
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again.value().created);
  EXPECT_EQ(again.value().queue, first.value().queue);
  EXPECT_EQ(b.CreateQueue(Config("q", 4)).error().code, Errc::kQueueExists);
}

TEST(BrokerTest, QueuesAreCapped) {
  BrokerLimits limits;
  limits.max_queues = 2;
  Broker b(limits, nullptr);
  ASSERT_TRUE(b.CreateQueue(Config("a")).ok());
  ASSERT_TRUE(b.CreateQueue(Config("b")).ok());
  const auto refused = b.CreateQueue(Config("c"));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::kTooManyQueues);
  EXPECT_NE(refused.error().message.find("limit 2"), std::string::npos);
  EXPECT_TRUE(b.CreateQueue(Config("a")).ok()) << "an identical create is not a new queue";
  ASSERT_TRUE(b.DeleteQueue("a").ok());
  EXPECT_TRUE(b.CreateQueue(Config("c")).ok()) << "a delete frees a place";
}

TEST(BrokerTest, NamesAreChecked) {
  Broker b(BrokerLimits{}, nullptr);
  for (const std::string& bad :
       std::vector<std::string>{"", "has space", "slash/no", "ünïcode", std::string(201, 'a')}) {
    EXPECT_EQ(b.CreateQueue(Config(bad)).error().code, Errc::kInvalidName) << bad;
  }
  EXPECT_TRUE(b.CreateQueue(Config(std::string(200, 'a'))).ok());
  EXPECT_TRUE(b.CreateQueue(Config("A-z_0.9")).ok());
  EXPECT_EQ(b.FindQueue("nope").error().code, Errc::kQueueNotFound);
  EXPECT_EQ(b.FindQueue("bad name").error().code, Errc::kInvalidName);
}

TEST(BrokerTest, DeadLetterQueueMustExistAndCannotBeDeletedWhileNamed) {
  Broker b(BrokerLimits{}, nullptr);
  QueueConfig c = Config("work");
  c.dead_letter_queue = "dlq";
  EXPECT_EQ(b.CreateQueue(c).error().code, Errc::kDeadLetterNotFound);
  ASSERT_TRUE(b.CreateQueue(Config("dlq")).ok());
  ASSERT_TRUE(b.CreateQueue(c).ok());
  EXPECT_EQ(b.DeleteQueue("dlq").error().code, Errc::kDeadLetterInUse);
  ASSERT_TRUE(b.DeleteQueue("work").ok());
  EXPECT_TRUE(b.DeleteQueue("dlq").ok());
  QueueConfig self = Config("self");
  self.dead_letter_queue = "self";
  EXPECT_EQ(b.CreateQueue(self).error().code, Errc::kInvalidArgument);
}

TEST(BrokerTest, VisibilityTimeoutIsBounded) {
  BrokerLimits limits;
  limits.max_lease = seconds(60);
  Broker b(limits, nullptr);
  QueueConfig c = Config("q");
  c.visibility_timeout = seconds(61);
  EXPECT_EQ(b.CreateQueue(c).error().code, Errc::kInvalidTimeout);
  c.visibility_timeout = seconds(-1);
  EXPECT_EQ(b.CreateQueue(c).error().code, Errc::kInvalidTimeout);
}

TEST(BrokerTest, ListIsOrderedByName) {
  Broker b(BrokerLimits{}, nullptr);
  for (const char* n : {"b", "c", "a"}) b.CreateQueue(Config(n));
  auto all = b.ListQueues();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0]->name(), "a");
  EXPECT_EQ(all[2]->name(), "c");
}

TEST(BrokerTest, MemoryLimitMakesPutsWaitAndFreeingWakesThem) {
  BrokerLimits limits;
  limits.max_memory = 13;  // 3 set aside for pub/sub: queues get 10
  limits.topic_caps.max_subscriber_memory = 3;
  Broker b(limits, nullptr);
  auto q1 = b.CreateQueue(Config("one")).value().queue;
  auto q2 = b.CreateQueue(Config("two")).value().queue;
  const TimePoint now = TimePoint() + seconds(1);
  std::optional<Result<uint64_t>> r1, r2, r3;
  WaitId id = 0;
  q1->Put("0123456789", {}, now, now, &id, [&](Result<uint64_t> r) { r1 = r; });
  ASSERT_TRUE(r1->ok());
  EXPECT_EQ(b.memory().used(), 10u);
  q2->Put("x", {}, now, now, &id, [&](Result<uint64_t> r) { r2 = r; });
  EXPECT_EQ(r2->error().code, Errc::kBrokerMemory);
  q2->Put("x", {}, now, now + seconds(5), &id, [&](Result<uint64_t> r) { r3 = r; });
  EXPECT_FALSE(r3.has_value());
  // Finishing the message on queue one frees memory and admits the put on two.
  std::optional<Result<Delivery>> got;
  q1->Get({}, now, now, &id, [&](Result<Delivery> r) { got = r; });
  EXPECT_FALSE(r3.has_value());  // delivered but not finished: still held
  ASSERT_TRUE(q1->TaskDone(got->value().tag, now).ok());
  ASSERT_TRUE(r3.has_value());
  EXPECT_TRUE(r3->ok());
  EXPECT_EQ(b.memory().used(), 1u);
}

TEST(BrokerTest, MemoryWaitTimesOutWithBrokerMemory) {
  BrokerLimits limits;
  limits.max_memory = 5;  // 1 set aside for pub/sub: queues get 4
  limits.topic_caps.max_subscriber_memory = 1;
  Broker b(limits, nullptr);
  auto q = b.CreateQueue(Config("q")).value().queue;
  const TimePoint now = TimePoint() + seconds(1);
  WaitId id = 0;
  std::optional<Result<uint64_t>> r;
  q->Put("1234", {}, now, now, &id, [](Result<uint64_t>) {});
  q->Put("5", {}, now, now + seconds(1), &id, [&](Result<uint64_t> x) { r = x; });
  q->ExpireDue(now + seconds(1));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->error().code, Errc::kBrokerMemory);
  EXPECT_NE(r->error().message.find("4 bytes"), std::string::npos);
}

TEST(DeliveryTagTest, RoundTripsAndRejectsGarbage) {
  const DeliveryTag t{123456789, 42};
  auto parsed = ParseDeliveryTag(FormatDeliveryTag(t));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->incarnation, t.incarnation);
  EXPECT_EQ(parsed->lease, t.lease);
  for (const char* bad :
       {"", ".", "1.", ".1", "a.1", "1.b", "1.2.3", "-1.2", "1 .2", "99999999999999999999999.1"}) {
    EXPECT_FALSE(ParseDeliveryTag(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace basin::core
