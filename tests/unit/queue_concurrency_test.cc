// The core under real threads (run under ThreadSanitizer by scripts/test.sh):
// producers, consumers, cancellers and a timer thread hammer one queue, and
// every message must be delivered and finished exactly once.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "broker/core/broker.h"

namespace basin::core {
namespace {

using std::chrono::milliseconds;

TEST(QueueConcurrencyTest, ProducersConsumersAndTimerAgreeOnEveryMessage) {
  constexpr int kProducers = 3, kConsumers = 3, kPerProducer = 3000;
  constexpr int kTotal = kProducers * kPerProducer;
  Broker broker(BrokerLimits{}, nullptr);
  QueueConfig c;
  c.name = "q";
  c.max_size = 16;  // small, so putters block and wake often
  auto q = broker.CreateQueue(c).value().queue;

  std::vector<std::atomic<int>> seen(kTotal);
  std::atomic<int> finished{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;

  for (int p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i) {
        // Retry until admitted: short deadlines make the timer thread race
        // with the hand-offs.
        for (bool done = false; !done;) {
          std::atomic<int> state{0};  // 0 pending, 1 ok, 2 failed
          WaitId id = 0;
          const TimePoint now = Clock::now();
          q->Put(std::to_string(p * kPerProducer + i), {}, now, now + milliseconds(2), &id,
                 [&](Result<uint64_t> r) { state = r.ok() ? 1 : 2; });
          while (state.load() == 0) std::this_thread::yield();
          done = state.load() == 1;
        }
      }
    });
  }
  for (int cidx = 0; cidx < kConsumers; ++cidx) {
    threads.emplace_back([&, cidx] {
      while (finished.load() < kTotal) {
        std::atomic<int> state{0};
        std::optional<Result<Delivery>> got;
        WaitId id = 0;
        const TimePoint now = Clock::now();
        q->Get({}, now, now + milliseconds(2), &id, [&](Result<Delivery> r) {
          got = std::move(r);
          state = 1;
        });
        if (id != 0 && cidx % 2 == 0) q->Cancel(id);  // races with the hand-off
        while (state.load() == 0) std::this_thread::yield();
        if (!got->ok()) continue;
        const int n = std::stoi(got->value().payload);
        if (seen[n].fetch_add(1) == 0) {
          ASSERT_TRUE(q->TaskDone(got->value().tag, Clock::now()).ok());
          ++finished;
        }
      }
    });
  }
  threads.emplace_back([&] {
    while (!stop.load()) q->ExpireDue(Clock::now());
  });
  for (size_t i = 0; i + 1 < threads.size(); ++i) threads[i].join();
  stop = true;
  threads.back().join();

  for (int n = 0; n < kTotal; ++n) EXPECT_EQ(seen[n].load(), 1) << n;
  const QueueStats s = q->Stats();
  EXPECT_EQ(s.unfinished, 0u);
  EXPECT_EQ(s.total_put, static_cast<uint64_t>(kTotal));
  EXPECT_EQ(s.total_done, static_cast<uint64_t>(kTotal));
  EXPECT_EQ(s.waiting_getters + s.waiting_putters, 0u);
}

}  // namespace
}  // namespace basin::core
