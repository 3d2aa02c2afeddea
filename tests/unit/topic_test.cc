// Topic names, pattern matching, subscription buffers and the router, with no
// transport: what the TopicService promises, checked in the core.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "broker/core/broker.h"
#include "broker/core/subscription.h"
#include "broker/core/topic_name.h"
#include "broker/core/topic_router.h"

namespace basin::core {
namespace {

using std::chrono::seconds;

TEST(TopicNameTest, NamesAndPatterns) {
  for (const char* ok : {"spub", "cctv1", "news.sports.eu", "a-b_c.D9", "x"}) {
    EXPECT_TRUE(ValidateTopicName(ok).ok()) << ok;
    EXPECT_TRUE(ValidateTopicPattern(ok).ok()) << ok;
  }
  for (const char* bad : {"", ".", "a.", ".a", "a..b", "a b", "a/b", "news.*", "news.#", "ü"}) {
    EXPECT_EQ(ValidateTopicName(bad).error().code, Errc::kInvalidTopic) << bad;
  }
  EXPECT_FALSE(ValidateTopicName(std::string(256, 'a')).ok());
  EXPECT_TRUE(ValidateTopicName(std::string(255, 'a')).ok());
  for (const char* ok : {"*", "#", "news.*", "news.#", "#.eu", "*.*.eu", "a.#.b"}) {
    EXPECT_TRUE(ValidateTopicPattern(ok).ok()) << ok;
  }
  for (const char* bad : {"", "news.", "news.**", "news.a*", "#x", "a..#"}) {
    EXPECT_EQ(ValidateTopicPattern(bad).error().code, Errc::kInvalidTopic) << bad;
  }
}

struct MatchCase {
  const char* pattern;
  const char* topic;
  bool matches;
};

TEST(TopicNameTest, StarMatchesOneWordHashMatchesZeroOrMore) {
  const MatchCase cases[] = {
      {"news", "news", true},
      {"news", "news.eu", false},
      {"news.*", "news.eu", true},
      {"news.*", "news", false},
      {"news.*", "news.eu.fr", false},
      {"news.#", "news", true},
      {"news.#", "news.eu", true},
      {"news.#", "news.eu.fr", true},
      {"news.#", "sports.eu", false},
      {"#", "anything.at.all", true},
      {"#", "x", true},
      {"*", "x", true},
      {"*", "x.y", false},
      {"*.eu", "news.eu", true},
      {"*.eu", "eu", false},
      {"#.eu", "eu", true},
      {"#.eu", "a.b.eu", true},
      {"#.eu", "a.b.eu.x", false},
      {"a.#.b", "a.b", true},
      {"a.#.b", "a.x.y.b", true},
      {"a.#.b", "a.x.y.c", false},
      {"a.*.#", "a", false},
      {"a.*.#", "a.b", true},
      {"a.*.#", "a.b.c.d", true},
      {"#.#", "a", true},
      {"news.*", "newsx.eu", false},
  };
  for (const MatchCase& c : cases) {
    EXPECT_EQ(TopicMatches(c.pattern, c.topic), c.matches) << c.pattern << " ~ " << c.topic;
  }
}

PublishedPtr Msg(const std::string& topic, const std::string& payload) {
  auto m = std::make_shared<PublishedMessage>();
  m->topic = topic;
  m->payload = payload;
  m->bytes = topic.size() + payload.size();
  return m;
}

// Pulls one batch and returns its payloads, or "<idle>" / "<end:REASON>".
std::vector<std::string> Pull(Subscription& sub, size_t max = 100) {
  auto pulled = sub.Next(max, 1 << 20);
  if (!pulled) return {"<idle>"};
  if (pulled->end) return {"<end>"};
  std::vector<std::string> out;
  for (const auto& d : pulled->messages) {
    out.push_back((d.dropped_before ? "+" + std::to_string(d.dropped_before) + " " : "") +
                  d.message->payload);
  }
  return out;
}

using Strings = std::vector<std::string>;

TEST(SubscriptionTest, WakesOnceWhenIdleAndKeepsOrder) {
  MemoryBudget memory(0);
  int wakes = 0;
  SubscriptionOptions o;
  o.topics = {"t"};
  Subscription sub(1, o, &memory, [&] { ++wakes; });
  // Busy at first (the stream writes its confirmation): no wake.
  sub.Offer(Msg("t", "a"), nullptr);
  EXPECT_EQ(wakes, 0);
  EXPECT_EQ(Pull(sub), Strings{"a"});
  EXPECT_EQ(Pull(sub), Strings{"<idle>"});
  sub.Offer(Msg("t", "b"), nullptr);
  sub.Offer(Msg("t", "c"), nullptr);
  EXPECT_EQ(wakes, 1);
  EXPECT_EQ(Pull(sub), (Strings{"b", "c"}));  // one batch
  EXPECT_EQ(Pull(sub), Strings{"<idle>"});
  EXPECT_EQ(memory.used(), 0u);
}

TEST(SubscriptionTest, BatchesAreBounded) {
  MemoryBudget memory(0);
  Subscription sub(1, SubscriptionOptions{{"t"}, {}, 100, 1000, OverflowPolicy::kDropOldest},
                   &memory, [] {});
  for (const char* p : {"1", "2", "3", "4", "5"}) sub.Offer(Msg("t", p), nullptr);
  EXPECT_EQ(Pull(sub, 2), (Strings{"1", "2"}));
  auto big = sub.Next(100, 3);  // 2 bytes a message: one fits, then the bound
  EXPECT_EQ(big->messages.size(), 1u);
  EXPECT_EQ(Pull(sub), (Strings{"4", "5"}));
}

TEST(SubscriptionTest, DropOldestPutsTheGapWhereTheMessagesWere) {
  MemoryBudget memory(0);
  SubscriptionOptions o;
  o.topics = {"t"};
  o.max_messages = 2;
  Subscription sub(1, o, &memory, [] {});
  for (const char* p : {"1", "2", "3", "4", "5"}) sub.Offer(Msg("t", p), nullptr);
  EXPECT_EQ(Pull(sub), (Strings{"+3 4", "5"}));
  sub.Offer(Msg("t", "6"), nullptr);
  EXPECT_EQ(Pull(sub), Strings{"6"});
}

TEST(SubscriptionTest, ByteBoundAndBrokerMemoryAreOverflowsToo) {
  MemoryBudget memory(0);
  SubscriptionOptions o;
  o.topics = {"t"};
  o.max_bytes = 10;  // "t" + 4-byte payload = 5 bytes a message
  Subscription sub(1, o, &memory, [] {});
  for (const char* p : {"aaaa", "bbbb", "cccc"}) sub.Offer(Msg("t", p), nullptr);
  EXPECT_EQ(Pull(sub), (Strings{"+1 bbbb", "cccc"}));

  MemoryBudget tight(6);
  Subscription small(2, SubscriptionOptions{{"t"}, {}, 100, 1000, OverflowPolicy::kDropOldest},
                     &tight, [] {});
  EXPECT_TRUE(small.Offer(Msg("t", "aaaa"), nullptr).accepted);
  // The budget has 1 byte left: the oldest is dropped to make room.
  auto offered = small.Offer(Msg("t", "bbbb"), nullptr);
  EXPECT_TRUE(offered.accepted);
  EXPECT_EQ(offered.dropped.size(), 1u);
  EXPECT_EQ(tight.used(), 5u);
  // A message larger than the whole buffer is lost; the next one says so.
  EXPECT_FALSE(small.Offer(Msg("t", std::string(2000, 'x')), nullptr).accepted);
  EXPECT_EQ(Pull(small), (Strings{"+1 bbbb"}));
  small.Offer(Msg("t", "c"), nullptr);
  small.Offer(Msg("t", std::string(2000, 'x')), nullptr);
  small.Offer(Msg("t", "d"), nullptr);
  EXPECT_EQ(Pull(small), (Strings{"+1 c", "+1 d"}));
}

TEST(SubscriptionTest, DisconnectPolicyEndsTheStream) {
  MemoryBudget memory(0);
  SubscriptionOptions o;
  o.topics = {"t"};
  o.max_messages = 1;
  o.policy = OverflowPolicy::kDisconnect;
  Subscription sub(1, o, &memory, [] {});
  EXPECT_TRUE(sub.Offer(Msg("t", "1"), nullptr).accepted);
  auto offered = sub.Offer(Msg("t", "2"), nullptr);
  EXPECT_FALSE(offered.accepted);
  EXPECT_EQ(offered.dropped.size(), 2u);  // the buffer and the new message
  auto end = sub.Next(10, 100);
  ASSERT_TRUE(end->end.has_value());
  EXPECT_EQ(end->end->code, Errc::kSlowSubscriber);
  EXPECT_EQ(memory.used(), 0u);
  EXPECT_FALSE(sub.Offer(Msg("t", "3"), nullptr).accepted);
}

TEST(SubscriptionTest, EndWakesAnIdleStream) {
  MemoryBudget memory(0);
  int wakes = 0;
  Subscription sub(1, SubscriptionOptions{{"t"}, {}, 10, 100, OverflowPolicy::kDropOldest}, &memory,
                   [&] { ++wakes; });
  EXPECT_EQ(Pull(sub), Strings{"<idle>"});
  sub.End(Error{Errc::kShutdown, "bye"});
  EXPECT_EQ(wakes, 1);
  EXPECT_EQ(sub.Next(10, 100)->end->code, Errc::kShutdown);
  sub.End(Error{Errc::kCancelled, "again"});  // idempotent
  EXPECT_EQ(wakes, 1);
}

class TopicRouterTest : public ::testing::Test {
 protected:
  TopicRouterTest() : broker_(BrokerLimits{}, nullptr) {}
  std::shared_ptr<Subscription> Sub(std::vector<std::string> topics,
                                    std::vector<std::string> patterns = {}) {
    SubscriptionOptions o;
    o.topics = std::move(topics);
    o.patterns = std::move(patterns);
    auto r = broker_.topics().Subscribe(o, [] {});
    EXPECT_TRUE(r.ok()) << r.error().message;
    r.value()->Next(1, 1);  // the stream's first pull: idle from here on
    return r.value();
  }
  // Without durable queues the outcome is reported before Publish returns.
  Result<PublishOutcome> TryPublish(const std::string& topic, const std::string& payload,
                                    const Headers& headers = {}) {
    std::optional<Result<PublishOutcome>> out;
    broker_.topics().Publish(topic, payload, headers, now_,
                             [&out](Result<PublishOutcome> r) { out = std::move(r); });
    EXPECT_TRUE(out.has_value());
    return out.value_or(Error{Errc::kInvalidArgument, "not reported"});
  }
  PublishOutcome Publish(const std::string& topic, const std::string& payload) {
    auto r = TryPublish(topic, payload);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.value();
  }
  Broker broker_;
  TimePoint now_ = TimePoint() + seconds(1);
};

TEST_F(TopicRouterTest, PublishReachesMatchingSubscriptionsOnce) {
  auto exact = Sub({"spub", "cctv1"});
  auto pattern = Sub({}, {"news.*"});
  auto both = Sub({"news.eu"}, {"news.*", "#"});
  EXPECT_EQ(Publish("spub", "hello").receivers, 2u);  // exact and `#`
  EXPECT_EQ(Publish("news.eu", "n").receivers, 2u);   // pattern, and `both` once
  EXPECT_EQ(Publish("nobody.listens", "x").receivers, 1u);

  auto e = exact->Next(10, 1000)->messages;
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].message->payload, "hello");
  EXPECT_EQ(e[0].pattern, nullptr);
  auto p = pattern->Next(10, 1000)->messages;
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].message->topic, "news.eu");
  EXPECT_EQ(*p[0].pattern, "news.*");
  auto b = both->Next(10, 1000)->messages;
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(*b[0].pattern, "#");
  EXPECT_EQ(b[1].message->payload, "n");
  EXPECT_EQ(b[1].pattern, nullptr);  // the exact topic wins
}

TEST_F(TopicRouterTest, UnsubscribeStopsDeliveryAndCounts) {
  auto a = Sub({"t"});
  auto b = Sub({}, {"t.#"});
  auto topics = broker_.topics().ListTopics();
  ASSERT_EQ(topics.size(), 1u);
  EXPECT_EQ(topics[0].subscribers, 2u);
  broker_.topics().Unsubscribe(a, Error{Errc::kCancelled, "gone"});
  EXPECT_TRUE(a->Next(10, 100)->end.has_value());
  EXPECT_EQ(Publish("t", "x").receivers, 1u);
  topics = broker_.topics().ListTopics();
  EXPECT_EQ(topics[0].subscribers, 1u);
  EXPECT_EQ(topics[0].published, 1u);
  EXPECT_EQ(topics[0].delivered, 1u);
}

TEST_F(TopicRouterTest, BoundQueuesGetACopyAndFullOnesAreReported) {
  QueueConfig big;
  big.name = "all";
  auto all = broker_.CreateQueue(big).value().queue;
  QueueConfig small;
  small.name = "one";
  small.max_size = 1;
  auto one = broker_.CreateQueue(small).value().queue;
  EXPECT_TRUE(broker_.BindQueue("orders.#", "all").value());
  EXPECT_FALSE(broker_.BindQueue("orders.#", "all").value());  // idempotent
  EXPECT_TRUE(broker_.BindQueue("orders.eu", "one").value());
  EXPECT_EQ(broker_.BindQueue("orders.#", "nosuch").error().code, Errc::kQueueNotFound);
  EXPECT_EQ(broker_.BindQueue("bad..pattern", "all").error().code, Errc::kInvalidTopic);

  PublishOutcome first = Publish("orders.eu", "1");
  EXPECT_EQ(first.queues, 2u);
  EXPECT_TRUE(first.undelivered_queues.empty());
  PublishOutcome second = Publish("orders.eu", "2");
  EXPECT_EQ(second.queues, 1u);
  EXPECT_EQ(second.undelivered_queues, std::vector<std::string>{"one"});
  EXPECT_EQ(one->Stats().total_rejected, 1u);
  EXPECT_EQ(all->Stats().size, 2u);

  std::optional<Result<Delivery>> got;
  WaitId id = 0;
  all->Get({}, now_, now_, &id, [&](Result<Delivery> r) { got = r; });
  EXPECT_EQ(got->value().headers.at("basin-topic"), "orders.eu");

  EXPECT_EQ(broker_.topics().BindingsOf("all"), std::vector<std::string>{"orders.#"});
  EXPECT_TRUE(broker_.UnbindQueue("orders.#", "all").ok());
  EXPECT_EQ(broker_.UnbindQueue("orders.#", "all").error().code, Errc::kBindingNotFound);
  ASSERT_TRUE(broker_.DeleteQueue("one").ok());
  EXPECT_TRUE(broker_.topics().ListBindings().empty());
}

TEST_F(TopicRouterTest, BadInputIsRefused) {
  EXPECT_EQ(TryPublish("a..b", "x").error().code, Errc::kInvalidTopic);
  EXPECT_EQ(TryPublish("news.*", "x").error().code, Errc::kInvalidTopic);
  EXPECT_EQ(TryPublish("t", "x", {{"basin-topic", "x"}}).error().code, Errc::kReservedHeader);
  EXPECT_EQ(TryPublish("t", std::string(2 << 20, 'x')).error().code, Errc::kMessageTooLarge);
  SubscriptionOptions none;
  EXPECT_EQ(broker_.topics().Subscribe(none, [] {}).error().code, Errc::kInvalidArgument);
  SubscriptionOptions bad;
  bad.patterns = {"news.**"};
  EXPECT_EQ(broker_.topics().Subscribe(bad, [] {}).error().code, Errc::kInvalidTopic);
  SubscriptionOptions huge;
  huge.topics = {"t"};
  huge.max_messages = 10'000'000;
  EXPECT_EQ(broker_.topics().Subscribe(huge, [] {}).error().code, Errc::kInvalidArgument);
}

TEST_F(TopicRouterTest, ShutdownEndsSubscriptions) {
  auto s = Sub({"t"});
  broker_.Shutdown();
  EXPECT_EQ(s->Next(10, 100)->end->code, Errc::kShutdown);
  SubscriptionOptions o;
  o.topics = {"t"};
  EXPECT_EQ(broker_.topics().Subscribe(o, [] {}).error().code, Errc::kShutdown);
}

}  // namespace
}  // namespace basin::core
