// Pub/sub against the real broker: the seed's publisher/subscriber pair, fan
// out, patterns, slow subscribers, vanished subscribers and bound queues.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <cstdint>
#include <fstream>
#include <functional>
#include <thread>
#include <vector>

#include "basin/client.h"
#include "broker_process.h"

namespace basin {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::BrokerProcess;
using testing::Process;
using testing::WaitFor;

uint64_t Subscribers(const Client& client, const std::string& topic) {
  for (const auto& t : client.list_topics().topics) {
    if (t.name == topic) return t.subscribers;
  }
  return 0;
}

// shared/seeds/000: the publisher sends lines to 'spub' until "over"; the
// subscriber listens on 'spub' and 'cctv1' and stops at "over".
TEST(TopicTest, SeedPublisherAndSubscriber) {
  BrokerProcess broker;
  Client client(broker.address());
  auto sub = client.subscribe({"spub", "cctv1"});  // live once this returns
  std::vector<std::pair<std::string, std::string>> heard;
  std::thread listener([&] {
    for (const TopicMessage& m : sub) {
      heard.emplace_back(m.topic, m.payload);
      if (m.payload == "over") break;
    }
  });
  EXPECT_EQ(client.publish("cctv1", "news at ten").receivers, 1u);
  for (const char* msg : {"hello", "world", "over"}) {
    EXPECT_EQ(client.publish("spub", msg).receivers, 1u);
  }
  listener.join();
  sub.cancel();
  const std::vector<std::pair<std::string, std::string>> want = {
      {"cctv1", "news at ten"}, {"spub", "hello"}, {"spub", "world"}, {"spub", "over"}};
  EXPECT_EQ(heard, want);
  EXPECT_FALSE(sub.next().has_value());  // cancelled: the iteration ends cleanly
  EXPECT_TRUE(WaitFor([&] { return Subscribers(client, "spub") == 0; }));
  EXPECT_EQ(client.publish("spub", "nobody").receivers, 0u);
}

TEST(TopicTest, OnePublisherTwentySubscribersEveryMessageInOrder) {
  constexpr int kSubscribers = 20, kMessages = 10'000;
  BrokerProcess broker;
  Client publisher(broker.address());
  std::vector<Subscription> subs;
  for (int i = 0; i < kSubscribers; ++i)
    subs.push_back(Client(broker.address()).subscribe({"fan"}));
  std::vector<int> received(kSubscribers, 0), out_of_order(kSubscribers, 0);
  std::vector<uint64_t> dropped(kSubscribers, 0);
  std::vector<std::thread> readers;
  for (int i = 0; i < kSubscribers; ++i) {
    readers.emplace_back([&, i] {
      while (received[i] < kMessages) {
        auto m = subs[i].next();
        if (!m) break;
        if (std::stoi(m->payload) != received[i]) ++out_of_order[i];
        dropped[i] += m->dropped_before;
        ++received[i];
      }
    });
  }
  for (int n = 0; n < kMessages; ++n) {
    ASSERT_EQ(publisher.publish("fan", std::to_string(n)).receivers, uint64_t{kSubscribers});
  }
  for (auto& r : readers) r.join();
  for (int i = 0; i < kSubscribers; ++i) {
    EXPECT_EQ(received[i], kMessages) << "subscriber " << i;
    EXPECT_EQ(out_of_order[i], 0) << "subscriber " << i;
    EXPECT_EQ(dropped[i], 0u) << "subscriber " << i;
  }
  const TopicStats stats = publisher.list_topics().topics.at(0);
  EXPECT_EQ(stats.published, uint64_t{kMessages});
  EXPECT_EQ(stats.delivered, uint64_t{kMessages} * kSubscribers);
  EXPECT_EQ(stats.dropped, 0u);
}

TEST(TopicTest, PatternsOverTheWire) {
  BrokerProcess broker;
  Client client(broker.address());
  auto star = client.subscribe({}, {.patterns = {"news.*"}});
  auto hash = client.subscribe({}, {.patterns = {"news.#"}});
  for (const char* t : {"news", "news.eu", "news.eu.fr", "sports.eu"}) client.publish(t, t);
  client.publish("end", "end");  // neither pattern matches: a marker for nobody
  auto m = star.next();
  EXPECT_EQ(m->topic, "news.eu");
  EXPECT_EQ(m->pattern, "news.*");
  star.cancel();
  std::vector<std::string> got;
  for (int i = 0; i < 3; ++i) got.push_back(hash.next()->topic);
  EXPECT_EQ(got, (std::vector<std::string>{"news", "news.eu", "news.eu.fr"}));
  EXPECT_THROW(client.subscribe({}, {.patterns = {"news.**"}}), InvalidArgument);
  EXPECT_THROW(client.subscribe({"bad..topic"}), InvalidArgument);
  EXPECT_THROW(client.subscribe({}), InvalidArgument);
  EXPECT_THROW(client.publish("news.*", "x"), InvalidArgument);
  try {
    client.publish("a b", "x");
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(e.reason(), "INVALID_TOPIC");
    EXPECT_NE(std::string(e.what()).find("'a b'"), std::string::npos);
  }
}

uint64_t RssBytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

void SlowSubscriberScenario(SubscribeOptions::Overflow policy) {
  constexpr int kMessages = 20'000;
  constexpr uint64_t kBufferBytes = 4 << 20;
  const std::string payload(1024, 'p');
  BrokerProcess broker;
  Client client(broker.address());
  // The slow subscriber never reads.
  auto slow = client.subscribe(
      {"feed"}, {.buffer_messages = 1'000'000, .buffer_bytes = kBufferBytes, .overflow = policy});
  std::vector<Subscription> fast;
  for (int i = 0; i < 2; ++i) fast.push_back(Client(broker.address()).subscribe({"feed"}));
  std::vector<int> received(2, 0);
  std::vector<std::thread> readers;
  for (int i = 0; i < 2; ++i) {
    readers.emplace_back([&, i] {
      while (received[i] < kMessages && fast[i].next()) ++received[i];
    });
  }
  const uint64_t idle_rss = RssBytes(broker.pid());
  std::atomic<bool> publishing{true};
  std::atomic<uint64_t> peak_rss{idle_rss};
  std::thread sampler([&] {
    while (publishing) {
      peak_rss = std::max(peak_rss.load(), RssBytes(broker.pid()));
      std::this_thread::sleep_for(milliseconds(5));
    }
  });
  for (int n = 0; n < kMessages; ++n) client.publish("feed", payload);
  for (auto& r : readers) r.join();
  publishing = false;
  sampler.join();

  // The publisher finished, the fast subscribers got everything, and the
  // slow one lost messages instead of growing the broker.
  EXPECT_EQ(received, (std::vector<int>{kMessages, kMessages}));
  const TopicStats stats = client.list_topics().topics.at(0);
  EXPECT_GT(stats.dropped, 0u);
  // Under AddressSanitizer freed memory sits in quarantine: RSS says nothing.
  // jemalloc keeps per-thread caches and one arena per thread or so: allow it
  // 6 MiB of slack (2 MiB was once exceeded by a page, 3 MiB by 155 KB in CI
  // with gRPC's write buffers). Unbounded, the buffer alone would have grown
  // by 20 MiB, above the whole allowance.
  constexpr uint64_t kAllocatorSlack = 6 << 20;
  if (!BASIN_SANITIZED) {
    EXPECT_LE(peak_rss.load(), idle_rss + 2 * kBufferBytes + kAllocatorSlack)
        << "idle " << idle_rss << " peak " << peak_rss.load();
  }
  if (policy == SubscribeOptions::Overflow::kDropOldest) {
    auto first = slow.next();
    ASSERT_TRUE(first.has_value());
    uint64_t gap = first->dropped_before;
    // Whatever was already on its way to the client comes first; then the gap.
    while (gap == 0) gap = slow.next()->dropped_before;
    EXPECT_GT(gap, 0u);
    EXPECT_EQ(Subscribers(client, "feed"), 3u);
  } else {
    EXPECT_THROW(
        {
          while (slow.next()) {
          }
        },
        SlowSubscriber);
    EXPECT_EQ(Subscribers(client, "feed"), 2u);
  }
}

TEST(TopicTest, SlowSubscriberDropsOldestWithAGapNotice) {
  SlowSubscriberScenario(SubscribeOptions::Overflow::kDropOldest);
}

TEST(TopicTest, SlowSubscriberIsDisconnected) {
  SlowSubscriberScenario(SubscribeOptions::Overflow::kDisconnect);
}

TEST(TopicTest, KilledSubscriberIsRemovedFromCounts) {
  BrokerProcess broker;
  Client client(broker.address());
  Process worker(testing::WorkerPath(), {broker.address(), "alerts", "subscribe"});
  ASSERT_EQ(worker.ReadLine(seconds(20)).value_or(""), "ready");
  EXPECT_EQ(Subscribers(client, "alerts"), 1u);
  EXPECT_EQ(client.publish("alerts", "one").receivers, 1u);
  EXPECT_EQ(worker.ReadLine(seconds(20)).value_or(""), "one");
  worker.Signal(SIGKILL);
  ASSERT_TRUE(WaitFor([&] { return Subscribers(client, "alerts") == 0; }));
  EXPECT_EQ(client.publish("alerts", "two").receivers, 0u);
}

TEST(TopicTest, BoundQueueReceivesEveryPublishAndJoinWorks) {
  BrokerProcess broker;
  Client client(broker.address());
  auto audit = client.queue("audit", {});
  EXPECT_TRUE(client.bind_queue("orders.#", "audit"));
  EXPECT_FALSE(client.bind_queue("orders.#", "audit"));
  EXPECT_EQ(audit.info().bindings, std::vector<std::string>{"orders.#"});
  // Published while nobody listens: kept by the queue.
  for (int i = 0; i < 100; ++i) {
    const PublishResult r = client.publish(i % 2 ? "orders.eu" : "orders.us", std::to_string(i));
    ASSERT_EQ(r.queues, 1u);
    ASSERT_EQ(r.receivers, 0u);
  }
  std::thread joiner([&] { audit.join(); });
  for (int i = 0; i < 100; ++i) {
    Message m = audit.get(seconds(5));
    EXPECT_EQ(m.payload(), std::to_string(i));
    EXPECT_EQ(m.headers().at("basin-topic"), i % 2 ? "orders.eu" : "orders.us");
    audit.task_done(m);
  }
  joiner.join();  // returns once all hundred are done
  EXPECT_EQ(audit.info().stats.unfinished, 0u);

  // A full bound queue does not block the publisher; the refusal is reported.
  client.queue("tiny", {.max_size = 1});
  client.bind_queue("orders.eu", "tiny");
  EXPECT_TRUE(client.publish("orders.eu", "a").undelivered_queues.empty());
  const PublishResult refused = client.publish("orders.eu", "b");
  EXPECT_EQ(refused.undelivered_queues, std::vector<std::string>{"tiny"});
  EXPECT_EQ(refused.queues, 1u);  // audit still took it
  EXPECT_EQ(client.queue("tiny").info().stats.total_rejected, 1u);

  client.unbind_queue("orders.#", "audit");
  EXPECT_THROW(client.unbind_queue("orders.#", "audit"), NotFound);
  EXPECT_THROW(client.bind_queue("orders.#", "nosuch"), NotFound);
  const TopicsInfo info = client.list_topics();
  ASSERT_EQ(info.bindings.size(), 1u);
  EXPECT_EQ(info.bindings[0].queue, "tiny");
}

std::string Repeat(const std::string& word, int n, const std::string& last = "") {
  std::string out;
  for (int i = 0; i < n; ++i) out += (i ? "." : "") + word;
  if (!last.empty()) out += "." + last;
  return out;
}

// Reproduced: one subscription to twenty `#` then `z` and one publish of sixty
// words, and the publish never returned while the broker burnt a core.
TEST(TopicTest, TwentyHashPatternAndALongTopicAnswer) {
  BrokerProcess broker;
  Client client(broker.address());
  auto sub = client.subscribe({}, {.patterns = {Repeat("#", 20, "z")}});
  try {
    client.publish(Repeat("w", 60), "x");
    FAIL() << "a 60-word topic was accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(e.reason(), "INVALID_TOPIC");
    EXPECT_NE(std::string(e.what()).find("at most 32 words"), std::string::npos) << e.what();
  }
  EXPECT_EQ(client.publish(Repeat("w", 32), "miss").receivers, 0u);
  EXPECT_EQ(client.publish(Repeat("w", 31, "z"), "hit").receivers, 1u);
  auto m = sub.next();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->payload, "hit");
  EXPECT_EQ(m->pattern, Repeat("#", 20, "z"));  // named as subscribed, not collapsed
  EXPECT_THROW(client.subscribe({}, {.patterns = {Repeat("#", 33)}}), InvalidArgument);
}

void ExpectRefused(const std::function<void()>& call, const std::string& reason) {
  try {
    call();
    ADD_FAILURE() << "not refused; expected " << reason;
  } catch (const Error& e) {
    EXPECT_EQ(e.reason(), reason) << e.what();
    EXPECT_EQ(e.code(), 8) << e.what();  // RESOURCE_EXHAUSTED
  }
}

TEST(TopicTest, SubscriptionsPerConnectionAndInTotalAreCapped) {
  BrokerProcess broker({"--max-subscriptions", "5", "--max-subscriptions-per-connection", "3"});
  Client a(broker.address()), b(broker.address()), c(broker.address());
  std::vector<Subscription> subs;
  for (int i = 0; i < 3; ++i) subs.push_back(a.subscribe({"t"}));
  ExpectRefused([&] { a.subscribe({"t"}); }, "TOO_MANY_SUBSCRIPTIONS");
  // Another connection has its own count, up to the broker's total.
  for (int i = 0; i < 2; ++i) subs.push_back(b.subscribe({"t"}));
  ExpectRefused([&] { c.subscribe({"t"}); }, "TOO_MANY_SUBSCRIPTIONS");
  EXPECT_EQ(c.publish("t", "x").receivers, 5u);
  // A cancelled subscription frees its place.
  subs[0].cancel();
  EXPECT_TRUE(WaitFor([&] {
    try {
      subs.push_back(c.subscribe({"t"}));
      return true;
    } catch (const Error&) {
      return false;
    }
  }));
  EXPECT_EQ(c.publish("t", "y").receivers, 5u);
}

TEST(TopicTest, AbsurdSubscriptionsAreRefused) {
  BrokerProcess broker;
  Client client(broker.address());
  std::vector<std::string> many(1'025, "t");
  for (size_t i = 0; i < many.size(); ++i) many[i] += std::to_string(i);
  EXPECT_THROW(client.subscribe(many), InvalidArgument);
  // Refused by the term count before any term is looked at.
  EXPECT_THROW(client.subscribe({}, {.patterns = std::vector<std::string>(100'000, "#")}),
               InvalidArgument);
  // A request larger than --max-message-bytes never reaches the broker's code.
  try {
    client.subscribe({}, {.patterns = std::vector<std::string>(100'000, Repeat("#", 32))});
    ADD_FAILURE() << "a 6 MB subscribe was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), 8) << e.what();  // RESOURCE_EXHAUSTED, from gRPC
  }
  EXPECT_THROW(client.subscribe({"t"}, {.buffer_messages = UINT64_MAX}), InvalidArgument);
  EXPECT_THROW(client.subscribe({"t"}, {.buffer_bytes = UINT64_MAX}), InvalidArgument);
  many.resize(1'024);
  auto sub = client.subscribe(many);  // the largest allowed
  EXPECT_EQ(client.publish("t1023", "x").receivers, 1u);
  EXPECT_EQ(sub.next()->payload, "x");
}

// N subscribers that never read used to be charged N times for one message,
// and took all of --max-memory from every queue.
TEST(TopicTest, IdleSubscribersCannotStarveQueues) {
  BrokerProcess broker({"--max-memory", "8MiB"});  // subscribers get 2 MiB of it
  Client client(broker.address());
  std::vector<Subscription> idle;
  for (int i = 0; i < 20; ++i) idle.push_back(client.subscribe({"feed"}));
  const std::string payload(10'000, 'p');
  for (int n = 0; n < 1'000; ++n) ASSERT_EQ(client.publish("feed", payload).receivers, 20u);
  // 4 MB into a queue without waiting: the memory is there.
  auto work = client.queue("work", {});
  for (int n = 0; n < 400; ++n) work.put(payload, Timeout(milliseconds(0)));
  EXPECT_EQ(work.info().stats.size, 400u);
  auto first = idle[0].next();
  ASSERT_TRUE(first.has_value());
  uint64_t gap = first->dropped_before;
  while (gap == 0) gap = idle[0].next()->dropped_before;
  EXPECT_GT(gap, 0u);
}

// The subscriber share was a cap inside --max-memory, not a reserve: queues
// that filled memory refused every Subscribe with BROKER_MEMORY and lost every
// published message.
TEST(TopicTest, QueuesThatFillMemoryDoNotStopPubSub) {
  BrokerProcess broker({"--max-memory", "8MiB"});  // 2 MiB set aside for pub/sub
  Client client(broker.address());
  auto work = client.queue("work", {});
  const std::string chunk(100'000, 'q');
  int queued = 0;
  try {
    for (; queued < 100; ++queued) work.put(chunk, Timeout(milliseconds(0)));
  } catch (const BrokerMemory&) {
  }
  EXPECT_GE(queued, 55);  // about 6 MiB: the queues' part
  EXPECT_LT(queued, 65);
  auto sub = client.subscribe({"t"}, {.patterns = {"t.#"}});
  const std::string payload(10'000, 'p');
  for (int n = 0; n < 20; ++n) ASSERT_EQ(client.publish("t", payload).receivers, 1u);
  for (int n = 0; n < 20; ++n) {
    auto m = sub.next();
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->dropped_before, 0u);
  }
  EXPECT_THROW(work.put(chunk, Timeout(milliseconds(0))), BrokerMemory);
}

// A publish walks at most 32 x --max-pattern-nodes nodes under the router's lock.
TEST(TopicTest, PatternNodesAreCapped) {
  BrokerProcess broker({"--max-pattern-nodes", "6"});
  Client client(broker.address());
  client.queue("q", {});
  auto sub = client.subscribe({}, {.patterns = {"a.b.c.d"}});
  ExpectRefused([&] { client.subscribe({}, {.patterns = {"x.y.z"}}); }, "TOO_MANY_PATTERN_NODES");
  ExpectRefused([&] { client.bind_queue("x.y.z", "q"); }, "TOO_MANY_PATTERN_NODES");
  EXPECT_TRUE(client.bind_queue("a.b.c.d.#", "q"));  // the fifth node
  EXPECT_TRUE(client.bind_queue("a.b.c.e", "q"));    // the sixth: the cap
  EXPECT_TRUE(client.bind_queue("a.b", "q"));        // no new one
  EXPECT_EQ(client.publish("a.b.c.d", "x").receivers, 1u);
}

TEST(TopicTest, BindingsAndTrackedTopicsAreCapped) {
  BrokerProcess broker({"--max-bindings", "2", "--max-tracked-topics", "10"});
  Client client(broker.address());
  client.queue("q", {});
  EXPECT_TRUE(client.bind_queue("a.#", "q"));
  EXPECT_TRUE(client.bind_queue("b", "q"));
  ExpectRefused([&] { client.bind_queue("c", "q"); }, "TOO_MANY_BINDINGS");
  EXPECT_FALSE(client.bind_queue("b", "q"));  // idempotent at the cap
  for (int i = 0; i < 100; ++i) client.publish("t" + std::to_string(i), "x");
  const TopicsInfo info = client.list_topics();
  EXPECT_EQ(info.topics.size(), 10u);
  EXPECT_EQ(info.topics.back().name, "t99");
  EXPECT_EQ(info.bindings.size(), 2u);
}

TEST(TopicTest, AbsurdCapFlagsAreRefused) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--max-subscriptions", "0"},
           {"--max-subscriptions-per-connection", "99999999999999999999999"},
           {"--max-subscription-terms", "-1"},
           {"--max-bindings", "18446744073709551615"},
           {"--max-tracked-topics", "0"},
           {"--max-pattern-nodes", "0"},
           {"--max-memory", "1GiB", "--max-subscriber-memory", "2GiB"},
           {"--max-memory", "1GiB", "--max-subscriber-memory", "1GiB"},
           {"--max-subscriber-memory", "0"},
           {"--max-memory", "1"},           // a 1-byte share, no room for queues
           {"--max-memory", "1048575"}}) {  // below the 1 MiB minimum
    std::vector<std::string> argv = {"--listen", "127.0.0.1:0"};
    argv.insert(argv.end(), args.begin(), args.end());
    Process basind(testing::BasindPath(), argv);
    const auto status = basind.Wait(seconds(20));
    ASSERT_TRUE(status.has_value()) << args[0] << " was accepted";
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2) << args[0];
  }
}

TEST(TopicTest, ShutdownEndsSubscriptionsWithUnavailable) {
  BrokerProcess broker;
  Client client(broker.address());
  auto sub = client.subscribe({"t"});
  std::atomic<bool> unavailable{false};
  std::thread reader([&] {
    try {
      while (sub.next()) {
      }
    } catch (const Unavailable&) {
      unavailable = true;
    }
  });
  const auto status = broker.Stop(seconds(5));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
  reader.join();
  EXPECT_TRUE(unavailable.load());
}

}  // namespace
}  // namespace basin
