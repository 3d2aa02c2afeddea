// Many clients at once: exactly-once delivery, FIFO service of blocked
// getters, and blocked calls that cost memory rather than threads.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "basin/client.h"
#include "basin/v1/queue.grpc.pb.h"
#include "broker_process.h"

namespace basin {
namespace {

using std::chrono::seconds;
using testing::BrokerProcess;
using testing::WaitFor;

TEST(ConcurrencyTest, EightProducersEightConsumersEachMessageExactlyOnce) {
  constexpr int kProducers = 8, kConsumers = 8, kTotal = 100'000;
  constexpr int kPerProducer = kTotal / kProducers;
  BrokerProcess broker;
  Client setup(broker.address());
  // 30 s leases: no spurious redelivery on busy cores.
  auto q = setup.queue("load", {.max_size = 1000, .visibility_timeout = seconds(30)});

  std::vector<std::atomic<uint8_t>> seen(kTotal);
  std::atomic<int> duplicates{0}, redelivered{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < kConsumers; ++c) {
    threads.emplace_back([&] {
      auto mine = Client(broker.address()).queue("load");
      try {
        for (;;) {
          Message m = mine.get();
          const int n = std::stoi(m.payload());
          if (seen[n].fetch_add(1) != 0) ++duplicates;
          if (m.delivery_count() != 1) ++redelivered;
          mine.task_done(m);
        }
      } catch (const Closed&) {
      }
    });
  }
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      auto mine = Client(broker.address()).queue("load");
      for (int i = 0; i < kPerProducer; ++i) mine.put(std::to_string(p * kPerProducer + i));
    });
  }
  for (auto& t : producers) t.join();
  q.join();
  q.close();
  for (auto& t : threads) t.join();

  EXPECT_EQ(duplicates.load(), 0);
  EXPECT_EQ(redelivered.load(), 0);
  int missing = 0;
  for (auto& s : seen) missing += s.load() == 0;
  EXPECT_EQ(missing, 0);
  const QueueStats stats = q.info().stats;
  EXPECT_EQ(stats.total_put, static_cast<uint64_t>(kTotal));
  EXPECT_EQ(stats.total_done, static_cast<uint64_t>(kTotal));
  EXPECT_EQ(stats.unfinished, 0u);
}

TEST(ConcurrencyTest, BlockedGettersAreWokenInArrivalOrder) {
  constexpr int kGetters = 5;
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("order", {});
  std::vector<std::string> got(kGetters);
  std::vector<std::thread> getters;
  for (int i = 0; i < kGetters; ++i) {
    getters.emplace_back([&, i] { got[i] = q.get().payload(); });
    // The next getter starts only once this one is registered.
    ASSERT_TRUE(WaitFor([&] { return q.info().stats.waiting_getters == i + 1u; }));
  }
  for (int i = 0; i < kGetters; ++i) q.put("m" + std::to_string(i));
  for (auto& t : getters) t.join();
  for (int i = 0; i < kGetters; ++i) EXPECT_EQ(got[i], "m" + std::to_string(i));
}

// Parks `n` Gets with the async stub; each completes into `finished`.
class AsyncGetters {
 public:
  AsyncGetters(v1::QueueService::Stub* stub, const std::string& queue)
      : stub_(stub), queue_(queue) {}
  ~AsyncGetters() {
    for (auto& c : calls_) c->ctx.TryCancel();
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return finished_ == calls_.size(); });
  }
  void Add(int n) {
    for (int i = 0; i < n; ++i) {
      auto call = std::make_unique<Call>();
      call->req.set_queue(queue_);
      call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(5));
      Call* raw = call.get();
      calls_.push_back(std::move(call));
      stub_->async()->Get(&raw->ctx, &raw->req, &raw->resp, [this, raw](grpc::Status s) {
        std::lock_guard lock(mu_);
        raw->status = s;
        ++finished_;
        cv_.notify_all();
      });
    }
  }
  size_t finished() {
    std::lock_guard lock(mu_);
    return finished_;
  }

 private:
  struct Call {
    grpc::ClientContext ctx;
    v1::GetRequest req;
    v1::GetResponse resp;
    grpc::Status status;
  };
  v1::QueueService::Stub* stub_;
  std::string queue_;
  std::vector<std::unique_ptr<Call>> calls_;
  std::mutex mu_;
  std::condition_variable cv_;
  size_t finished_ = 0;
};

TEST(ConcurrencyTest, TenThousandBlockedGetsCostNoThreads) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("crowd", {});
  auto channel = grpc::CreateChannel(broker.address(), grpc::InsecureChannelCredentials());
  auto stub = v1::QueueService::NewStub(channel);
  AsyncGetters getters(stub.get(), "crowd");

  getters.Add(100);
  ASSERT_TRUE(WaitFor([&] { return q.info().stats.waiting_getters == 100; }));
  const int threads_at_100 = broker.Threads();
  ASSERT_GT(threads_at_100, 0);
  getters.Add(9'900);
  ASSERT_TRUE(
      WaitFor([&] { return q.info().stats.waiting_getters == 10'000; }, std::chrono::seconds(60)));
  const int threads_at_10000 = broker.Threads();
  EXPECT_LE(threads_at_10000, threads_at_100 + 4)
      << "at 100 waiters: " << threads_at_100 << " threads";
  EXPECT_EQ(getters.finished(), 0u);
  // A put reaches exactly one of them; the rest are still waiting.
  q.put("one");
  ASSERT_TRUE(WaitFor([&] { return getters.finished() == 1; }));
  EXPECT_EQ(q.info().stats.waiting_getters, 9'999u);
}

}  // namespace
}  // namespace basin
