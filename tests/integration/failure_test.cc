// Consumers that die or freeze, clients that vanish, and broker shutdown.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <thread>

#include "basin/client.h"
#include "basin/v1/queue.grpc.pb.h"
#include "broker_process.h"

namespace basin {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::BrokerProcess;
using testing::Process;
using testing::WaitFor;
using testing::WorkerPath;

// A worker takes the task and holds it; the test then kills or freezes it.
void ExpectRedeliveryAfter(int signal) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("tasks", {.visibility_timeout = seconds(1)});
  q.put("task-1");
  Process worker(WorkerPath(), {broker.address(), "tasks", "hold"});
  ASSERT_EQ(worker.ReadLine(seconds(20)).value_or(""), "task-1");
  EXPECT_EQ(q.info().stats.in_flight, 1u);
  worker.Signal(signal);
  // The lease runs out and the task goes to the next consumer.
  Message again = q.get(seconds(20));
  EXPECT_EQ(again.payload(), "task-1");
  EXPECT_EQ(again.delivery_count(), 2u);
  q.task_done(again);
  EXPECT_EQ(q.info().stats.total_redelivered, 1u);
  worker.Signal(SIGKILL);
}

TEST(FailureTest, KilledConsumersTaskIsRedelivered) { ExpectRedeliveryAfter(SIGKILL); }

TEST(FailureTest, FrozenConsumersTaskIsRedelivered) { ExpectRedeliveryAfter(SIGSTOP); }

// A blocked get whose client is gone is withdrawn: nothing is handed to it.
void ExpectBlockedGetterRemovedAfter(int signal) {
  BrokerProcess broker({"--keepalive-time", "1s", "--keepalive-timeout", "1s"});
  Client client(broker.address());
  auto q = client.queue("idle", {});
  Process worker(WorkerPath(), {broker.address(), "idle", "block"});
  ASSERT_TRUE(WaitFor([&] { return q.info().stats.waiting_getters == 1; }));
  worker.Signal(signal);
  // SIGKILL closes the connection; SIGSTOP is found by unanswered keepalives.
  ASSERT_TRUE(WaitFor([&] { return q.info().stats.waiting_getters == 0; }, seconds(30)));
  q.put("kept");
  const QueueStats s = q.info().stats;
  EXPECT_EQ(s.size, 1u);
  EXPECT_EQ(s.total_delivered, 0u);
  worker.Signal(SIGKILL);
}

TEST(FailureTest, BlockedGetOfKilledClientIsRemoved) { ExpectBlockedGetterRemovedAfter(SIGKILL); }

TEST(FailureTest, BlockedGetOfFrozenClientIsRemovedByKeepalive) {
  ExpectBlockedGetterRemovedAfter(SIGSTOP);
}

TEST(FailureTest, SigtermAnswersBlockedCallsWithUnavailableAndExitsZero) {
  BrokerProcess broker;
  Client client(broker.address());
  auto empty = client.queue("empty", {});
  auto full = client.queue("full", {.max_size = 1});
  full.put("x");
  std::atomic<int> unavailable{0};
  std::vector<std::thread> blocked;
  blocked.emplace_back([&] {
    try {
      empty.get();
    } catch (const Unavailable&) {
      ++unavailable;
    }
  });
  blocked.emplace_back([&] {
    try {
      full.put("y");
    } catch (const Unavailable&) {
      ++unavailable;
    }
  });
  blocked.emplace_back([&] {
    try {
      full.join();
    } catch (const Unavailable&) {
      ++unavailable;
    }
  });
  ASSERT_TRUE(WaitFor([&] {
    return empty.info().stats.waiting_getters == 1 && full.info().stats.waiting_putters == 1 &&
           full.info().stats.waiting_joiners == 1;
  }));
  const auto start = std::chrono::steady_clock::now();
  const auto status = broker.Stop(seconds(5));
  ASSERT_TRUE(status.has_value()) << "basind did not exit within 5 s";
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(5));
  for (auto& t : blocked) t.join();
  EXPECT_EQ(unavailable.load(), 3);
}

TEST(FailureTest, TakenPortFailsLoudly) {
  BrokerProcess first;
  Process second(testing::BasindPath(), {"--listen", first.address(), "--log-level", "error"});
  const auto status = second.Wait(seconds(20));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_NE(WEXITSTATUS(*status), 0);
}

TEST(FailureTest, UntimedGetOutlastsTheBrokersWaitCap) {
  BrokerProcess broker({"--max-wait", "200ms"});
  Client client(broker.address());
  auto q = client.queue("slow", {});
  std::string got;
  std::thread getter([&] { got = q.get().payload(); });
  ASSERT_TRUE(WaitFor([&] { return q.info().stats.waiting_getters == 1; }));
  // Let several of the broker's 200 ms caps pass: the SDK must re-issue.
  std::this_thread::sleep_for(milliseconds(700));
  q.put("late");
  getter.join();
  EXPECT_EQ(got, "late");
  // A timed get longer than the cap also waits its full time.
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(q.get(milliseconds(600)), Empty);
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(600));
}

TEST(FailureTest, AWaitNeverOutlastsTheCallsDeadline) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("q", {});
  auto stub = v1::QueueService::NewStub(
      grpc::CreateChannel(broker.address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + milliseconds(300));
  v1::GetRequest req;
  req.set_queue("q");
  req.mutable_timeout()->set_seconds(60);  // asks for far longer than the call may last
  v1::GetResponse resp;
  EXPECT_EQ(stub->Get(&ctx, req, &resp).error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  // The broker dropped the waiter with the call: a later put stays in the queue.
  ASSERT_TRUE(WaitFor([&] { return q.info().stats.waiting_getters == 0; }, seconds(5)));
  q.put("kept");
  EXPECT_EQ(q.info().stats.size, 1u);
}

TEST(FailureTest, MemoryLimitFailsPutsWithBrokerMemory) {
  // Queues get --max-memory (at least 1 MiB) less the part set aside for
  // pub/sub: 1 KiB.
  BrokerProcess broker({"--max-memory", "1MiB", "--max-subscriber-memory", "1047552",
                        "--max-message-bytes", "1KiB"});
  Client client(broker.address());
  auto q = client.queue("big", {});
  q.put(std::string(1000, 'x'));
  EXPECT_THROW(q.put(std::string(100, 'y'), milliseconds(100)), BrokerMemory);
  Message m = q.get();
  q.task_done(m);  // frees the memory
  EXPECT_NO_THROW(q.put(std::string(100, 'y'), milliseconds(100)));
}

// A batch larger than the queues' part of --max-memory can never be admitted:
// refused at once, rather than waiting at the head of the queue's putters and
// holding up every later put there.
TEST(FailureTest, ABatchLargerThanTheQueuesMemoryIsRefusedAtOnce) {
  // Queues get 544 KiB; gRPC takes requests up to --max-message-bytes + 64 KiB
  // (576 KiB), so a batch of 558,000 bytes reaches the queue.
  BrokerProcess broker({"--max-memory", "1MiB", "--max-subscriber-memory", "480KiB",
                        "--max-message-bytes", "512KiB"});
  Client client(broker.address());
  auto q = client.queue("q", {});
  std::vector<OutgoingMessage> batch(9, OutgoingMessage{std::string(62'000, 'b'), {}, {}});
  EXPECT_THROW(q.put_batch(batch, std::chrono::seconds(30)), InvalidArgument);
  q.put("small", milliseconds(100));  // the queue is not held up
  EXPECT_EQ(q.info().stats.size, 1u);
}

}  // namespace
}  // namespace basin
