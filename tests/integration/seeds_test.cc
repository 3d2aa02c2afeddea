// The scenarios of the blog posts our users learned from (shared/seeds), run
// across the network against the real broker.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "basin/client.h"
#include "broker_process.h"

namespace basin {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::BrokerProcess;
using testing::WaitFor;

// Seed 1, model 1: one producer puts ten buns; the consumer eats until the
// end of stream. close() replaces the `None` sentinel.
TEST(SeedsTest, OneProducerOneConsumerWithClose) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("buns", {});
  std::thread producer([&] {
    for (int i = 1; i <= 10; ++i) q.put("bun" + std::to_string(i));
    q.close();
  });
  std::vector<std::string> eaten;
  std::thread consumer([&] {
    Client own(broker.address());
    auto mine = own.queue("buns");
    try {
      for (;;) {
        Message m = mine.get(seconds(30));
        eaten.push_back(m.payload());
        mine.task_done(m);
      }
    } catch (const Closed&) {
    }
  });
  producer.join();
  consumer.join();
  ASSERT_EQ(eaten.size(), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(eaten[i], "bun" + std::to_string(i + 1));
}

// Seed 1, models 2 and 3: three producers, two consumers, JoinableQueue: the
// main process waits for the producers, then join() until every item is done.
TEST(SeedsTest, ThreeProducersTwoConsumersWithJoin) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("food", {});
  std::mutex mu;
  std::multiset<std::string> eaten;
  std::atomic<int> done_calls{0};
  std::vector<std::thread> consumers;
  for (int c = 0; c < 2; ++c) {
    consumers.emplace_back([&] {
      auto mine = Client(broker.address()).queue("food");
      try {
        for (;;) {
          Message m = mine.get();
          {
            std::lock_guard lock(mu);
            eaten.insert(m.payload());
          }
          ++done_calls;  // before task_done: join() may return as soon as it lands
          mine.task_done(m);
        }
      } catch (const Closed&) {
      }
    });
  }
  std::vector<std::thread> producers;
  for (const std::string name : {"ocean", "sky", "rocky"}) {
    producers.emplace_back([&, name] {
      for (int i = 0; i < 3; ++i) q.put(name + std::to_string(i));
    });
  }
  for (auto& p : producers) p.join();
  q.join();  // returns only when all nine are task_done
  EXPECT_EQ(done_calls.load(), 9);
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(eaten.size(), 9u);
    EXPECT_EQ(eaten.count("sky2"), 1u);
  }
  q.close();  // lets the consumers leave their loops
  for (auto& c : consumers) c.join();
  EXPECT_EQ(q.info().stats.unfinished, 0u);
}

// Seed 1, JoinableQueue basics: put two, get and task_done each, join returns.
TEST(SeedsTest, JoinableQueueBasics) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("jq", {});
  q.put("ocean");
  q.put("can");
  Message a = q.get();
  EXPECT_EQ(a.payload(), "ocean");
  q.task_done(a);
  Message b = q.get();
  EXPECT_EQ(b.payload(), "can");
  EXPECT_THROW(q.join(milliseconds(100)), JoinTimeout);
  q.task_done(b);
  q.join();
}

// A bounded queue of 3: the fourth put blocks until a get frees a slot.
TEST(SeedsTest, BoundedQueuePutBlocksUntilGet) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("bounded", {.max_size = 3});
  for (int i = 0; i < 3; ++i) q.put("m" + std::to_string(i));
  EXPECT_TRUE(q.full());
  EXPECT_THROW(q.put_nowait("x"), Full);
  std::atomic<bool> put_returned{false};
  std::thread blocked([&] {
    q.put("m3");
    put_returned = true;
  });
  ASSERT_TRUE(WaitFor([&] { return q.info().stats.waiting_putters == 1; }));
  EXPECT_FALSE(put_returned.load());
  EXPECT_EQ(q.get().payload(), "m0");
  blocked.join();
  EXPECT_TRUE(put_returned.load());
  EXPECT_EQ(q.qsize(), 3u);
  for (int i = 1; i <= 3; ++i) EXPECT_EQ(q.get_nowait().payload(), "m" + std::to_string(i));
  EXPECT_THROW(q.get_nowait(), Empty);
}

}  // namespace
}  // namespace basin
