// Durable queues against the real broker: restarts, kill -9 in the middle of
// a stream of puts and acks, a torn log tail, a full disk, and disk use that
// follows what is live.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "basin/client.h"
#include "basin/consumer.h"
#include "basin/producer.h"
#include "broker_process.h"
#include "temp_dir.h"

namespace basin {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::BrokerProcess;
using testing::TempDir;
using testing::WaitFor;

// A broker on a data directory that the test restarts on the same port, so
// clients reconnect to it as they would to a restarted server.
class DurableBroker {
 public:
  explicit DurableBroker(std::string data_dir, std::vector<std::string> extra = {})
      : data_dir_(std::move(data_dir)), extra_(std::move(extra)) {
    Start("127.0.0.1:0");
    address_ = broker_->address();
  }
  const std::string& address() const { return address_; }
  BrokerProcess& process() { return *broker_; }
  void Kill() {
    broker_->Kill();
    broker_.reset();
  }
  void Stop() {
    ASSERT_EQ(broker_->Stop(), 0);
    broker_.reset();
  }
  void Restart() { Start(address_); }

 private:
  void Start(const std::string& listen) {
    std::vector<std::string> args = {"--listen", listen, "--data-dir", data_dir_};
    args.insert(args.end(), extra_.begin(), extra_.end());
    broker_.emplace(args);
  }

  const std::string data_dir_;
  const std::vector<std::string> extra_;
  std::string address_;
  std::optional<BrokerProcess> broker_;
};

// The broker removes finished segments while we look, so a file listed a
// moment ago may be gone: it then counts as nothing, which is what it is.
uint64_t DirBytes(const std::string& dir) {
  uint64_t total = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(e.path(), ec);
    if (!ec) total += size;
  }
  return total;
}

TEST(DurabilityTest, DurableNeedsADataDirectory) {
  BrokerProcess broker;
  Client client(broker.address());
  EXPECT_THROW(client.queue("q", {.durable = true}), InvalidArgument);
  client.queue("memory", {});
  TempDir tmp;
  DurableBroker durable(tmp.Sub("data"));
  Client c2(durable.address());
  c2.queue("mem", {});
  // A durable queue's dead letters must be durable too.
  EXPECT_THROW(c2.queue("d", {.dead_letter_queue = "mem", .durable = true}), InvalidArgument);
}

// A delayed message keeps its delay across a restart: it is still delayed
// after it, then ready at its time; one already due comes back ready.
TEST(DurabilityTest, ADelayOutlastsARestart) {
  TempDir tmp;
  DurableBroker broker(tmp.Sub("data"));
  const auto put_at = std::chrono::steady_clock::now();
  {
    Client client(broker.address());
    auto q = client.queue("later", {.durable = true});
    q.put({.payload = "due soon", .delay = seconds(2)});
    q.put({.payload = "much later", .delay = std::chrono::hours(1)});
    EXPECT_EQ(q.info().stats.delayed, 2u);
  }
  broker.Stop();
  broker.Restart();
  Client client(broker.address());
  auto q = client.queue("later", {.durable = true});
  EXPECT_EQ(q.info().stats.unfinished, 2u);
  Message m = q.get(seconds(20));
  EXPECT_EQ(m.payload(), "due soon");
  EXPECT_GE(std::chrono::steady_clock::now() - put_at, seconds(2));
  q.task_done(m);
  EXPECT_THROW(q.get_nowait(), Empty);
  EXPECT_EQ(q.info().stats.delayed, 1u);
}

// What a restart keeps: messages in order, the delivered-not-done ones again
// with one more delivery, the unfinished count and the closed mark, so join
// still returns once the work is done. (A clean stop: task_dones, deliveries
// and the close are written without waiting for a sync, so after kill -9
// the last few milliseconds of them may be missing — see the crash test.)
TEST(DurabilityTest, ARestartKeepsOrderDeliveriesClosedAndJoin) {
  TempDir tmp;
  DurableBroker broker(tmp.Sub("data"));
  {
    Client client(broker.address());
    auto q = client.queue("jobs", {.durable = true});
    auto mem = client.queue("scratch", {});
    mem.put("gone after a restart");
    for (int i = 1; i <= 10; ++i) q.put("job-" + std::to_string(i));
    Message first = q.get(seconds(5));
    q.task_done(first);
    q.get(seconds(5));  // job-2 and job-3 are out when the broker dies
    q.get(seconds(5));
    q.close();
  }
  broker.Stop();
  broker.Restart();
  Client client(broker.address());
  auto q = client.queue("jobs", {.durable = true});  // idempotent: it is back
  const QueueInfo info = q.info();
  EXPECT_TRUE(info.options.durable);
  EXPECT_TRUE(info.stats.closed);
  EXPECT_EQ(info.stats.unfinished, 9u);
  for (const QueueInfo& other : client.list_queues()) EXPECT_NE(other.name, "scratch");
  EXPECT_THROW(q.join(milliseconds(50)), JoinTimeout);
  for (int i = 2; i <= 10; ++i) {
    Message m = q.get(seconds(5));
    EXPECT_EQ(m.payload(), "job-" + std::to_string(i));
    EXPECT_EQ(m.delivery_count(), i <= 3 ? 2u : 1u) << m.payload();
    q.task_done(m);
  }
  q.join(seconds(5));
  EXPECT_THROW(q.get(seconds(1)), Closed);
  // task_dones are durable too: a clean restart finds the queue drained.
  broker.Stop();
  broker.Restart();
  Client again(broker.address());
  EXPECT_EQ(again.queue("jobs", {.durable = true}).info().stats.unfinished, 0u);
}

// The issue's crash test: a Produce stream puts 200,000 messages while a
// Consume stream acks what it gets, and the broker is killed with SIGKILL at
// random points five times. Every acknowledged put must be received, nothing
// that was never put may appear, and a message may come twice only if it was
// in flight at a kill (received before a kill and again after it, or sent
// before a kill and confirmed after it).
TEST(DurabilityTest, AcknowledgedPutsSurviveFiveKills) {
  constexpr int kMessages = 200'000;
  constexpr int kKills = 5;
  TempDir tmp;
  DurableBroker broker(tmp.Sub("data"));
  Client client(broker.address());
  client.queue("crash", {.durable = true});

  std::atomic<int> epoch{0};  // kills so far
  std::vector<std::atomic<int>> sent_in(kMessages), confirmed_in(kMessages);
  for (int i = 0; i < kMessages; ++i) sent_in[i] = confirmed_in[i] = -1;
  std::atomic<int> confirmed{0}, failed{0};
  std::vector<std::vector<int>> receipts(kMessages);  // epochs; consumer thread only
  std::atomic<int> received{0}, unknown{0};

  Consumer consumer(client, "crash", {.prefetch = 200});
  std::thread consuming([&] {
    try {
      while (auto m = consumer.next()) {
        size_t at = 0;
        const int i = std::stoi(m->payload(), &at);
        if (at != m->payload().size() || i < 0 || i >= kMessages) {
          ++unknown;
        } else {
          if (receipts[i].empty()) ++received;
          receipts[i].push_back(epoch.load());
        }
        consumer.ack(*m);
      }
    } catch (const std::exception& e) {
      ADD_FAILURE() << "consumer: " << e.what();
    }
  });
  std::thread producing([&] {
    Producer producer(client, "crash", {.max_batch_messages = 256});
    for (int i = 0; i < kMessages; ++i) {
      sent_in[i] = epoch.load();
      producer.send(std::to_string(i), [&, i](uint64_t, std::exception_ptr error) {
        if (error != nullptr) {
          ++failed;
          return;
        }
        confirmed_in[i] = epoch.load();
        ++confirmed;
      });
    }
    producer.flush();
  });

  std::mt19937 random(std::random_device{}());
  const unsigned seed = random();
  random.seed(seed);
  for (int k = 0; k < kKills; ++k) {
    const int at = (k + 1) * (kMessages / (kKills + 2)) +
                   static_cast<int>(random() % (kMessages / (kKills + 2)));
    ASSERT_TRUE(WaitFor([&] { return confirmed.load() >= at; }, seconds(20)))
        << "kill " << k << ": " << confirmed.load() << " confirmed (seed " << seed << ")";
    broker.Kill();
    ++epoch;  // after the kill: nothing more arrives from the old broker
    broker.Restart();
  }
  producing.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(confirmed.load(), kMessages);
  ASSERT_TRUE(WaitFor([&] { return received.load() >= confirmed.load(); }, seconds(30)))
      << received.load() << " of " << confirmed.load() << " received (seed " << seed << ")";
  consumer.cancel();
  consuming.join();

  EXPECT_EQ(unknown.load(), 0);
  int duplicates = 0, unexplained = 0, redeliveries = 0;
  for (int i = 0; i < kMessages; ++i) {
    if (confirmed_in[i] >= 0) {
      EXPECT_FALSE(receipts[i].empty()) << "lost " << i;
    }
    if (receipts[i].size() < 2) continue;
    ++duplicates;
    const bool redelivered = receipts[i].front() < receipts[i].back();
    const bool resent = sent_in[i] < confirmed_in[i];
    if (!redelivered && !resent) ++unexplained;
    if (redelivered) ++redeliveries;
  }
  EXPECT_EQ(unexplained, 0) << "duplicates not in flight at a kill (seed " << seed << ")";
  std::printf(
      "crash test: %d kills, %d messages, %d received twice or more (%d of them again after a "
      "kill)\n",
      kKills, kMessages, duplicates, redeliveries);
}

// A publish into a durable bound queue is answered once the copy is written,
// and the binding itself is kept: after kill -9 both are there, and the
// next publish is routed again.
TEST(DurabilityTest, BindingsAndRoutedCopiesSurviveAKill) {
  TempDir tmp;
  DurableBroker broker(tmp.Sub("data"));
  {
    Client client(broker.address());
    client.queue("orders", {.durable = true});
    client.queue("scratch", {});
    ASSERT_TRUE(client.bind_queue("orders.#", "orders"));
    ASSERT_TRUE(client.bind_queue("orders.#", "scratch"));
    ASSERT_TRUE(client.bind_queue("gone.*", "orders"));
    client.unbind_queue("gone.*", "orders");
    const PublishResult r = client.publish("orders.eu", "first");
    EXPECT_EQ(r.queues, 2u);
  }
  broker.Kill();
  broker.Restart();
  Client client(broker.address());
  auto q = client.queue("orders", {.durable = true});
  EXPECT_EQ(q.info().bindings, std::vector<std::string>{"orders.#"});
  EXPECT_EQ(client.publish("orders.us", "second").queues, 1u);
  for (const char* want : {"first", "second"}) {
    Message m = q.get(seconds(5));
    EXPECT_EQ(m.payload(), want);
    EXPECT_EQ(m.headers().at("basin-topic"),
              std::string(want) == "first" ? "orders.eu" : "orders.us");
    q.task_done(m);
  }
}

// A batch the queue answers at once (here every message too large) while a
// durable batch ahead of it waits for its sync: confirms still reach the
// producer in batch order, so each message gets its own answer.
TEST(DurabilityTest, ConfirmsKeepBatchOrderWhenALaterBatchIsAnsweredFirst) {
  TempDir tmp;
  DurableBroker broker(tmp.Sub("data"),
                       {"--max-message-bytes", "1KiB", "--fsync-interval", "50ms"});
  Client client(broker.address());
  client.queue("ordered", {.durable = true});
  Producer producer(client, "ordered", {.max_batch_messages = 1, .linger = milliseconds(0)});
  std::vector<std::future<uint64_t>> fine, big;
  for (int i = 0; i < 20; ++i) {
    fine.push_back(producer.send("fine-" + std::to_string(i)));
    big.push_back(producer.send(std::string(5000, 'x')));
  }
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(fine[i].get(), static_cast<uint64_t>(i + 1));
    EXPECT_THROW(big[i].get(), MessageTooLarge);
  }
}

// A write cut off by a crash leaves a partial record at the end of the last
// segment: recovery cuts it off (with a warning) and the log goes on.
TEST(DurabilityTest, ATornLastRecordIsCutOffAndTheLogGoesOn) {
  TempDir tmp;
  const std::string data = tmp.Sub("data");
  DurableBroker broker(data);
  {
    Client client(broker.address());
    auto q = client.queue("torn", {.durable = true});
    for (int i = 0; i < 5; ++i) q.put("m" + std::to_string(i));
  }
  broker.Stop();
  const std::string segment = data + "/queues/torn.queue/00000000000000000000.log";
  const auto intact = std::filesystem::file_size(segment);
  {
    // A record header that promises 100 bytes, and 10 of them.
    std::ofstream out(segment, std::ios::app | std::ios::binary);
    const char torn[] = "\xa5\x71\x51\xb4\x65\x00\x00\x00\x01\x02\x03\x04\x02partial..";
    out.write(torn, sizeof torn - 1);
  }
  broker.Restart();
  EXPECT_EQ(std::filesystem::file_size(segment), intact);
  Client client(broker.address());
  auto q = client.queue("torn", {.durable = true});
  q.put("after");
  broker.Stop();
  broker.Restart();
  Client again(broker.address());
  auto q2 = again.queue("torn", {.durable = true});
  for (const char* want : {"m0", "m1", "m2", "m3", "m4", "after"}) {
    Message m = q2.get(seconds(5));
    EXPECT_EQ(m.payload(), want);
    q2.task_done(m);
  }
}

// A full disk (here a file size limit on the broker, which fails its writes
// with EFBIG as a full disk fails them with ENOSPC): durable puts fail with
// UNAVAILABLE, in-memory queues carry on, and once there is room again puts
// succeed without a restart. Nothing refused is found after one.
TEST(DurabilityTest, AFullDiskRefusesDurablePutsAndRecoversByItself) {
  TempDir tmp;
  DurableBroker broker(tmp.Sub("data"));
  Client client(broker.address());
  auto q = client.queue("full", {.durable = true});
  auto mem = client.queue("memory", {});
  const pid_t pid = broker.process().pid();
  const rlimit small{256 << 10, RLIM_INFINITY};
  ASSERT_EQ(::prlimit(pid, RLIMIT_FSIZE, &small, nullptr), 0);

  const std::string payload(1000, 'x');
  int accepted = 0;
  std::optional<Unavailable> refused;
  for (int i = 0; i < 1000 && !refused; ++i) {
    try {
      q.put(payload);
      ++accepted;
    } catch (const Unavailable& e) {
      refused = e;
    }
  }
  ASSERT_TRUE(refused.has_value()) << "no put failed";
  EXPECT_EQ(refused->reason(), "STORAGE_UNAVAILABLE");
  EXPECT_GT(accepted, 100);
  EXPECT_EQ(q.info().stats.size, static_cast<uint64_t>(accepted));
  mem.put("still here");
  EXPECT_EQ(mem.get(seconds(5)).payload(), "still here");

  const rlimit unlimited{RLIM_INFINITY, RLIM_INFINITY};
  ASSERT_EQ(::prlimit(pid, RLIMIT_FSIZE, &unlimited, nullptr), 0);
  q.put("after");
  broker.Kill();
  broker.Restart();
  Client again(broker.address());
  auto q2 = again.queue("full", {.durable = true});
  EXPECT_EQ(q2.info().stats.size, static_cast<uint64_t>(accepted) + 1);
}

// Per-queue logs: a queue whose one message waits does not pin the segments
// of a busy queue beside it, whose drained segments are deleted as it goes.
TEST(DurabilityTest, DiskUseFollowsWhatIsLiveBesideATrickleQueue) {
  TempDir tmp;
  const std::string data = tmp.Sub("data");
  DurableBroker broker(data, {"--segment-bytes", "64KiB"});
  Client client(broker.address());
  auto trickle = client.queue("trickle", {.durable = true});
  auto busy = client.queue("busy", {.durable = true});
  trickle.put("waits for hours");
  const std::vector<OutgoingMessage> batch(50, OutgoingMessage{std::string(1000, 'b'), {}, {}});
  uint64_t peak = 0;
  for (int round = 0; round < 100; ++round) {  // 5 MB through the busy queue
    busy.put_batch(batch);
    for (const Message& m : busy.get_batch(50, seconds(5))) busy.task_done(m);
    peak = std::max(peak, DirBytes(data + "/queues/busy.queue"));
  }
  trickle.put("another");
  busy.put("last");
  busy.task_done(busy.get(seconds(5)));
  // Compaction follows the task_dones; it is asynchronous, so wait for it.
  EXPECT_TRUE(WaitFor([&] { return DirBytes(data + "/queues/busy.queue") <= 4 * (64 << 10); }))
      << DirBytes(data + "/queues/busy.queue") << " bytes on disk";
  EXPECT_LT(peak, 1u << 20) << "5 MB went through; the log should never have held much of it";
  broker.Stop();
  broker.Restart();
  Client again(broker.address());
  EXPECT_EQ(again.queue("trickle", {.durable = true}).get(seconds(5)).payload(), "waits for hours");
  EXPECT_EQ(again.queue("busy", {.durable = true}).info().stats.unfinished, 0u);
}

// A message delayed for hours on a busy queue does not keep the log written
// after it: the journal has it written again at the tail (docs/api.md,
// Scheduling), and after a restart it is still delayed, once.
TEST(DurabilityTest, ALongDelayDoesNotPinTheLogOfABusyQueue) {
  TempDir tmp;
  const std::string data = tmp.Sub("data");
  DurableBroker broker(data, {"--segment-bytes", "64KiB"});
  Client client(broker.address());
  auto busy = client.queue("busy", {.durable = true});
  busy.put({.payload = "in a day", .delay = std::chrono::hours(24)});
  const std::vector<OutgoingMessage> batch(50, OutgoingMessage{std::string(1000, 'b'), {}, {}});
  uint64_t peak = 0;
  for (int round = 0; round < 100; ++round) {  // 5 MB through the queue
    busy.put_batch(batch);
    for (const Message& m : busy.get_batch(50, seconds(5))) busy.task_done(m);
    peak = std::max(peak, DirBytes(data + "/queues/busy.queue"));
  }
  EXPECT_LT(peak, 2u << 20) << "5 MB went through; the delayed message kept the log";
  broker.Stop();
  broker.Restart();
  Client again(broker.address());
  const QueueStats s = again.queue("busy", {.durable = true}).info().stats;
  EXPECT_EQ(s.delayed, 1u);
  EXPECT_EQ(s.unfinished, 1u);
}

}  // namespace
}  // namespace basin
