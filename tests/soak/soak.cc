// basin_soak: the soak test of issue 11, against the real basind.
//
//   basin_soak [--seconds N] [--long] [--seed S] [--rss-margin-mib M]
//
// Starts basind (127.0.0.1:0, a temporary --data-dir, a small --max-memory),
// warms it up (every path once) and records its RSS, threads and open fds; then runs 16 workers
// (workers.h) for N seconds (default 120; --long: 3 hours unless --seconds
// says otherwise) against eight queues (queues.h), with random sizes,
// timeouts, disconnects mid-batch, cancelled calls and SIGKILLed client
// processes. Then it stops the producers, the consumers, drains every queue
// and checks:
//   - no violation was seen on the way (ledger.h: a refused put delivered, a
//     finished message delivered again, a corrupt payload, ...) and every
//     queue's stats balanced at every sample;
//   - every queue: total_put == total_done + total_dead_lettered + unfinished,
//     nothing unfinished after the drain, and each dead-letter queue received
//     exactly what its source dead-lettered;
//   - every confirmed put was delivered at least once (duplicates counted);
//   - with every client gone, the broker's RSS, threads and fds are back near
//     their baseline (margins below; docs/robustness.md, "Soak test");
//   - basind exits 0 on SIGTERM.
// Prints `soak: N passed, M failed` and exits non-zero on any failure. The
// seed is printed first; `--seed S` replays the same choices (thread timing
// still varies). A watchdog bounds every phase.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "basin/client.h"
#include "basin/producer.h"
#include "broker_process.h"
#include "ledger.h"
#include "proc_stats.h"
#include "queues.h"
#include "temp_dir.h"
#include "workers.h"

namespace basin::soak {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr uint64_t kMiB = 1 << 20;
// The broker's budget for messages: small, so the unbounded queues fill it
// and every put waits on memory now and then.
constexpr const char* kMaxMemory = "96MiB";
// Margins for "back to baseline" once every client is gone. See
// docs/robustness.md, "Soak test", for the figures behind them.
constexpr uint64_t kDefaultRssMarginMiB = 64;
// basind links jemalloc, which gives freed pages back only as allocations go
// on (10 s decay, no background thread): an idle broker keeps its peak
// resident, whatever it still holds. The soak's broker purges on a background
// thread within about a second instead, so RSS at the end shows what is live
// (plus fragmentation), and a leak cannot hide in pages retained from the
// peak. One background thread: the thread count stays fixed. Ignored by glibc
// malloc (sanitizer builds); a MALLOC_CONF already set is kept.
constexpr const char* kBrokerMallocConf =
    "background_thread:true,max_background_threads:1,dirty_decay_ms:1000,muzzy_decay_ms:0";
constexpr int kThreadMargin = 2;
constexpr int kFdMargin = 2;

// The 16 workers.
constexpr WorkerKind kWorkers[] = {
    WorkerKind::kStreamProducer,
    WorkerKind::kStreamProducer,
    WorkerKind::kStreamProducer,
    WorkerKind::kStreamConsumer,
    WorkerKind::kStreamConsumer,
    WorkerKind::kStreamConsumer,
    WorkerKind::kUnaryProducer,
    WorkerKind::kUnaryProducer,
    WorkerKind::kUnaryConsumer,
    WorkerKind::kUnaryConsumer,
    WorkerKind::kRaw,
    WorkerKind::kRaw,
    WorkerKind::kChildProducer,
    WorkerKind::kChildProducer,
    WorkerKind::kChildConsumer,
    WorkerKind::kChildConsumer,
};

std::string MiB(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / kMiB);
  return buf;
}

std::string Describe(const ProcStats& s) {
  return "rss " + MiB(s.rss_bytes) + ", threads " + std::to_string(s.threads) + ", fds " +
         std::to_string(s.fds);
}

// Bounds each phase: a phase that overruns prints where it stuck, kills the
// broker and exits, so a hang never outlives the CI job's patience.
class Watchdog {
 public:
  Watchdog(pid_t broker, std::string data_dir, uint64_t seed)
      : broker_(broker), data_dir_(std::move(data_dir)), seed_(seed), thread_([this] { Run(); }) {}
  ~Watchdog() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void Phase(const std::string& name, milliseconds budget) {
    std::lock_guard lock(mu_);
    phase_ = name;
    deadline_ = Clock::now() + budget;
    std::cerr << "soak: phase " << name << " at "
              << std::chrono::duration_cast<seconds>(Clock::now() - started_).count() << " s"
              << std::endl;
  }

 private:
  void Run() {
    std::unique_lock lock(mu_);
    while (!done_) {
      if (Clock::now() > deadline_) {
        std::cerr << "soak: FAIL: stuck in phase '" << phase_ << "' past its time budget (seed "
                  << seed_ << ")\nsoak: 0 passed, 1 failed" << std::endl;
        kill(broker_, SIGKILL);
        std::error_code ignored;
        std::filesystem::remove_all(data_dir_, ignored);
        std::_Exit(1);
      }
      cv_.wait_for(lock, seconds(1));
    }
  }

  const pid_t broker_;
  const std::string data_dir_;
  const uint64_t seed_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  const Clock::time_point started_ = Clock::now();
  std::string phase_ = "start";
  Clock::time_point deadline_ = Clock::now() + seconds(60);
  std::thread thread_;  // last
};

// Samples the broker once a second while the workers run: its resources
// (peaks), whether it is alive, and every queue's balance; prints progress.
class Monitor {
 public:
  Monitor(SoakContext& ctx, pid_t broker, seconds progress_every)
      : ctx_(ctx), broker_(broker), progress_every_(progress_every), thread_([this] { Run(); }) {}
  ~Monitor() { Stop(); }
  void Stop() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  // Waits until `until` or until the broker is gone; returns whether it is.
  bool WaitForBrokerGone(Clock::time_point until) {
    std::unique_lock lock(mu_);
    return cv_.wait_until(lock, until, [this] { return gone_; });
  }
  ProcStats peak() {
    std::lock_guard lock(mu_);
    return peak_;
  }
  uint64_t unbalanced() const { return unbalanced_.load(); }
  uint64_t samples() const { return samples_.load(); }

 private:
  void Run() {
    Client client(ctx_.address);
    const auto start = Clock::now();
    auto next_progress = start + progress_every_;
    std::unique_lock lock(mu_);
    while (!done_) {
      lock.unlock();
      const auto stats = ReadProcStats(broker_);
      std::vector<QueueInfo> infos;
      try {
        infos = client.list_queues();
      } catch (const std::exception& e) {
        if (stats) ctx_.ledger->Fail(std::string("ListQueues failed: ") + e.what());
      }
      for (const QueueInfo& info : infos) {
        const QueueStats& s = info.stats;
        if (s.total_put != s.total_done + s.total_dead_lettered + s.unfinished ||
            s.unfinished != s.size + s.in_flight) {
          ++unbalanced_;
          ctx_.ledger->Fail(info.name + " is out of balance: total_put " +
                            std::to_string(s.total_put) + ", done " + std::to_string(s.total_done) +
                            ", dead-lettered " + std::to_string(s.total_dead_lettered) +
                            ", unfinished " + std::to_string(s.unfinished) + ", size " +
                            std::to_string(s.size) + ", in flight " + std::to_string(s.in_flight));
        }
      }
      ++samples_;
      if (Clock::now() >= next_progress && stats) {
        next_progress += progress_every_;
        uint64_t ready = 0;
        for (const QueueInfo& info : infos) ready += info.stats.size;
        const auto& c = *ctx_.counters;
        std::cerr << "soak: t=" << std::chrono::duration_cast<seconds>(Clock::now() - start).count()
                  << "s confirmed " << c.Get(Count::kConfirmed) << " delivered "
                  << c.Get(Count::kDelivered) << " duplicates " << c.Get(Count::kDuplicates)
                  << " kills " << c.Get(Count::kKills) << " ready " << ready << "; broker "
                  << Describe(*stats) << std::endl;
      }
      lock.lock();
      if (!stats) {
        gone_ = true;
        cv_.notify_all();
        break;
      }
      peak_.rss_bytes = std::max(peak_.rss_bytes, stats->rss_bytes);
      peak_.threads = std::max(peak_.threads, stats->threads);
      peak_.fds = std::max(peak_.fds, stats->fds);
      cv_.wait_for(lock, seconds(1), [this] { return done_; });
    }
  }

  SoakContext& ctx_;
  const pid_t broker_;
  const seconds progress_every_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  bool gone_ = false;
  ProcStats peak_;
  std::atomic<uint64_t> unbalanced_{0};
  std::atomic<uint64_t> samples_{0};
  std::thread thread_;  // last
};

class Checks {
 public:
  void Expect(bool ok, const std::string& name, const std::string& detail) {
    (ok ? passed_ : failed_)++;
    std::cerr << (ok ? "soak: ok: " : "soak: FAILED: ") << name;
    if (!detail.empty()) std::cerr << " (" << detail << ")";
    std::cerr << std::endl;
  }
  int passed() const { return passed_; }
  int failed() const { return failed_; }

 private:
  int passed_ = 0;
  int failed_ = 0;
};

void CreateQueues(const Client& client) {
  for (const QueueSpec& spec : kQueues) {
    QueueOptions o;
    o.max_size = spec.max_size;
    o.max_bytes = spec.max_bytes;
    o.durable = spec.durable;
    o.max_deliveries = spec.max_deliveries;
    if (spec.dead_letter >= 0)
      o.dead_letter_queue = kQueues[static_cast<size_t>(spec.dead_letter)].name;
    o.visibility_timeout = milliseconds(spec.visibility_ms);
    client.queue(spec.name, o);
  }
}

// Every path once (stream and unary puts and gets, durable segments opened),
// so the baseline includes what the broker sets up on first use.
void WarmUp(SoakContext& ctx) {
  const Client client(ctx.address);
  CreateQueues(client);
  uint32_t seq = 0;
  for (int q : kProducible) {
    const std::string name = kQueues[static_cast<size_t>(q)].name;
    {
      Producer p(client, name);
      std::vector<std::pair<uint64_t, std::future<uint64_t>>> sent;
      for (int i = 0; i < 10; ++i) {
        const uint64_t id = MakeId(kWarmUpWorker, 0, seq++);
        ctx.ledger->Sent(id, q);
        sent.emplace_back(id, p.send(OutgoingMessage{MakePayload(id), IdHeaders(id), {}}));
      }
      for (auto& [id, f] : sent) {
        f.get();
        ctx.ledger->Confirmed(id, q);
      }
    }
  }
  if (!DrainAll(ctx, seconds(60))) throw std::runtime_error("the warm-up traffic did not drain");
}

// Polls until the broker's threads and fds have not changed for a second
// (connections just closed are torn down), within `budget`.
ProcStats Settle(pid_t pid, milliseconds budget) {
  const auto deadline = Clock::now() + budget;
  ProcStats last = ReadProcStats(pid).value_or(ProcStats{});
  int same = 0;
  while (same < 20 && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(50));  // bounded poll
    const ProcStats s = ReadProcStats(pid).value_or(ProcStats{});
    same = (s.threads == last.threads && s.fds == last.fds) ? same + 1 : 0;
    last = s;
  }
  return last;
}

struct Options {
  int64_t seconds = 120;
  bool long_run = false;
  uint64_t seed = 0;
  bool seed_given = false;
  uint64_t rss_margin_mib = kDefaultRssMarginMiB;
};

int Usage(int exit_code = 2) {
  std::cerr << "usage: basin_soak [--seconds N] [--long] [--seed S] [--rss-margin-mib M]\n"
               "  --seconds N         run the workers for N seconds (default 120)\n"
               "  --long              a long soak: 3 hours unless --seconds is given\n"
               "  --seed S            replay the choices of an earlier run\n"
               "  --rss-margin-mib M  broker RSS allowed above its baseline at the end (64)\n";
  return exit_code;
}

int Run(const Options& opt) {
  signal(SIGPIPE, SIG_IGN);
  const auto started = Clock::now();
  std::cerr << "soak: seed " << opt.seed << ", " << opt.seconds << " s (replay: basin_soak --seed "
            << opt.seed << " --seconds " << opt.seconds << ")" << std::endl;
  setenv("MALLOC_CONF", kBrokerMallocConf, /*overwrite=*/0);
  std::cerr << "soak: basind with MALLOC_CONF=" << std::getenv("MALLOC_CONF") << std::endl;
  testing::TempDir dir;
  const std::string data_dir = dir.Sub("data");
  testing::BrokerProcess broker({"--data-dir", data_dir, "--max-memory", kMaxMemory,
                                 "--segment-bytes", "1MiB", "--max-wait", "5s"});
  Watchdog watchdog(broker.pid(), data_dir, opt.seed);
  Counters counters;
  std::vector<int> dlq_of;
  for (const QueueSpec& spec : kQueues) dlq_of.push_back(spec.dead_letter);
  Ledger ledger(dlq_of, &counters);
  SoakContext ctx;
  ctx.address = broker.address();
  ctx.self_path = std::filesystem::read_symlink("/proc/self/exe").string();
  ctx.ledger = &ledger;
  ctx.counters = &counters;
  Checks checks;
  const uint64_t rss_margin = opt.rss_margin_mib * kMiB;

  watchdog.Phase("warm-up", seconds(180));
  WarmUp(ctx);
  counters.Reset();  // the figures are the run's
  const ProcStats baseline = Settle(broker.pid(), seconds(20));
  std::cerr << "soak: baseline after warm-up: " << Describe(baseline) << std::endl;

  watchdog.Phase("run", milliseconds(opt.seconds * 1000 + 30'000));
  std::vector<std::thread> workers;
  bool broker_gone = false;
  ProcStats peak;
  uint64_t unbalanced = 0, samples = 0;
  {
    Monitor monitor(ctx, broker.pid(), seconds(opt.long_run ? 60 : 10));
    Rng seeds(opt.seed);
    for (size_t i = 0; i < std::size(kWorkers); ++i) {
      workers.emplace_back(RunWorker, std::ref(ctx), static_cast<uint32_t>(i), kWorkers[i],
                           seeds.Next());
    }
    broker_gone = monitor.WaitForBrokerGone(Clock::now() + seconds(opt.seconds));
    // Producers first, while consumers still make room for what they wait on.
    watchdog.Phase("stopping producers", seconds(90));
    ctx.stop_producing = true;
    for (size_t i = 0; i < workers.size(); ++i) {
      if (StopsWithProducers(kWorkers[i])) workers[i].join();
    }
    watchdog.Phase("stopping consumers", seconds(60));
    ctx.stop_consuming = true;
    for (size_t i = 0; i < workers.size(); ++i) {
      if (workers[i].joinable()) workers[i].join();
    }
    monitor.Stop();
    peak = monitor.peak();
    unbalanced = monitor.unbalanced();
    samples = monitor.samples();
  }
  const auto run_time = Clock::now() - started;
  checks.Expect(!broker_gone, "basind stayed up", broker_gone ? "it died during the run" : "");
  if (broker_gone) {
    std::cerr << "soak: 0 passed, 1 failed (basind died; seed " << opt.seed << ")" << std::endl;
    return 1;
  }
  const uint64_t online_failures = ledger.failures();
  checks.Expect(unbalanced == 0, "queue stats balanced at every sample",
                std::to_string(samples) + " samples, " + std::to_string(unbalanced) + " off");

  watchdog.Phase("drain", seconds(150));
  const bool drained = DrainAll(ctx, seconds(120));
  checks.Expect(drained, "every queue drained (nothing unfinished, no dead letter in transit)", "");

  watchdog.Phase("final checks", seconds(60));
  {
    Client client(ctx.address);
    std::vector<QueueInfo> infos = client.list_queues();
    std::vector<const QueueStats*> by_index(kQueues.size(), nullptr);
    for (const QueueInfo& info : infos) {
      for (size_t q = 0; q < kQueues.size(); ++q) {
        if (info.name == kQueues[q].name) by_index[q] = &info.stats;
      }
    }
    for (size_t q = 0; q < kQueues.size(); ++q) {
      const QueueStats* s = by_index[q];
      if (s == nullptr) {
        checks.Expect(false, std::string(kQueues[q].name) + " exists", "missing from ListQueues");
        continue;
      }
      const std::string figures =
          "put " + std::to_string(s->total_put) + " = done " + std::to_string(s->total_done) +
          " + dead-lettered " + std::to_string(s->total_dead_lettered) + " + unfinished " +
          std::to_string(s->unfinished) + "; delivered " + std::to_string(s->total_delivered) +
          ", redelivered " + std::to_string(s->total_redelivered);
      checks.Expect(s->total_put == s->total_done + s->total_dead_lettered + s->unfinished &&
                        s->unfinished == 0,
                    std::string(kQueues[q].name) + " balances and is empty", figures);
      if (const int dlq = kQueues[q].dead_letter; dlq >= 0) {
        const QueueStats* d = by_index[static_cast<size_t>(dlq)];
        checks.Expect(d != nullptr && d->total_put == s->total_dead_lettered,
                      std::string(kQueues[static_cast<size_t>(dlq)].name) +
                          " received every dead letter of " + kQueues[q].name,
                      std::to_string(s->total_dead_lettered) + " dead-lettered, " +
                          std::to_string(d == nullptr ? 0 : d->total_put) + " received");
      }
    }
  }
  checks.Expect(online_failures == 0,
                "no delivery violation during the run (refused put delivered, finished message "
                "redelivered or dead-lettered, wrong queue, corrupt payload, unbalanced stats)",
                std::to_string(online_failures) + " seen");
  const uint64_t before_check = ledger.failures();
  const Ledger::Totals totals = ledger.Check();
  checks.Expect(ledger.failures() == before_check,
                "every confirmed put was delivered at least once",
                std::to_string(totals.confirmed) + " confirmed, " +
                    std::to_string(totals.confirmed_received) + " delivered, " +
                    std::to_string(totals.lost) + " lost");

  // Every Client of this process is gone by now (workers, monitor, drain).
  watchdog.Phase("resources", seconds(90));
  ProcStats after;
  auto back = [&](const ProcStats& s) {
    return s.rss_bytes <= baseline.rss_bytes + rss_margin &&
           std::abs(s.threads - baseline.threads) <= kThreadMargin &&
           std::abs(s.fds - baseline.fds) <= kFdMargin;
  };
  // Until every figure is within its margin and RSS has stopped falling for
  // 2 s (the allocator's last purges), so the figure reported is the settled
  // one; at most 60 s.
  const auto resource_start = Clock::now();
  auto next_report = resource_start + seconds(5);
  auto last_fall = resource_start;
  uint64_t lowest_rss = UINT64_MAX;
  for (;;) {
    after = ReadProcStats(broker.pid()).value_or(ProcStats{});
    const auto now = Clock::now();
    if (after.rss_bytes + kMiB / 4 < lowest_rss) last_fall = now;
    lowest_rss = std::min(lowest_rss, after.rss_bytes);
    if ((back(after) && now - last_fall >= seconds(2)) || now >= resource_start + seconds(60)) {
      break;
    }
    if (now >= next_report) {
      next_report += seconds(5);
      std::cerr << "soak: waiting for the broker to give back: " << Describe(after) << std::endl;
    }
    std::this_thread::sleep_for(milliseconds(100));  // bounded poll
  }
  std::cerr << "soak: resources after "
            << std::chrono::duration_cast<milliseconds>(Clock::now() - resource_start).count()
            << " ms: " << Describe(after) << std::endl;
  checks.Expect(
      after.rss_bytes <= baseline.rss_bytes + rss_margin,
      "broker RSS back within " + MiB(rss_margin) + " of its baseline",
      MiB(baseline.rss_bytes) + " -> " + MiB(after.rss_bytes) + ", peak " + MiB(peak.rss_bytes));
  checks.Expect(std::abs(after.threads - baseline.threads) <= kThreadMargin,
                "broker threads back within " + std::to_string(kThreadMargin) + " of baseline",
                std::to_string(baseline.threads) + " -> " + std::to_string(after.threads) +
                    ", peak " + std::to_string(peak.threads));
  checks.Expect(std::abs(after.fds - baseline.fds) <= kFdMargin,
                "broker fds back within " + std::to_string(kFdMargin) + " of baseline",
                std::to_string(baseline.fds) + " -> " + std::to_string(after.fds) + ", peak " +
                    std::to_string(peak.fds));

  watchdog.Phase("shutdown", seconds(45));
  const auto status = broker.Stop(seconds(30));
  checks.Expect(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0,
                "basind exits 0 on SIGTERM",
                status ? "wait status " + std::to_string(*status) : "did not exit in 30 s");

  const auto total = std::chrono::duration_cast<seconds>(Clock::now() - started).count();
  std::cerr << "soak: seed " << opt.seed << ", run " << opt.seconds << " s, "
            << std::chrono::duration_cast<seconds>(run_time).count() << " s to stop, " << total
            << " s in all" << std::endl;
  std::cerr << "soak: messages sent " << totals.sent << ", confirmed " << totals.confirmed
            << ", delivered " << counters.Get(Count::kDelivered) << " (duplicates "
            << counters.Get(Count::kDuplicates) << "), refused " << counters.Get(Count::kRefused)
            << ", outcome unknown " << counters.Get(Count::kUnknownOutcome) << " ("
            << totals.unknown_received << " of them delivered), dead letters seen "
            << totals.dead_lettered_seen << "; warm-up " << totals.warm_up_confirmed << " messages"
            << std::endl;
  std::cerr << "soak: counts";
  for (size_t i = 0; i < static_cast<size_t>(Count::kN); ++i) {
    std::cerr << " " << Counters::Name(static_cast<Count>(i)) << "="
              << counters.Get(static_cast<Count>(i));
  }
  std::cerr << std::endl;
  std::cerr << "soak: broker before " << Describe(baseline) << "; peak " << Describe(peak)
            << "; after " << Describe(after) << std::endl;
  std::cout << "soak: " << checks.passed() << " passed, " << checks.failed() << " failed"
            << std::endl;
  return checks.failed() == 0 ? 0 : 1;
}

}  // namespace
}  // namespace basin::soak

int main(int argc, char** argv) {
  using basin::soak::Options;
  if (argc >= 2 && std::string(argv[1]) == "--child") {
    return basin::soak::ChildMain(argc - 2, argv + 2);
  }
  Options opt;
  bool seconds_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    try {
      if (a == "--seconds" && i + 1 < argc) {
        opt.seconds = std::stoll(argv[++i]);
        seconds_given = true;
      } else if (a == "--rss-margin-mib" && i + 1 < argc) {
        opt.rss_margin_mib = std::stoull(argv[++i]);
      } else if (a == "--help" || a == "-h") {
        return basin::soak::Usage(0);
      } else if (a == "--long") {
        opt.long_run = true;
      } else if (a == "--seed" && i + 1 < argc) {
        opt.seed = std::stoull(argv[++i]);
        opt.seed_given = true;
      } else {
        return basin::soak::Usage();
      }
    } catch (const std::exception&) {
      return basin::soak::Usage();
    }
  }
  if (opt.seconds <= 0) return basin::soak::Usage();
  if (opt.long_run && !seconds_given) opt.seconds = 3 * 3600;
  if (!opt.seed_given) opt.seed = std::random_device{}();
  try {
    return basin::soak::Run(opt);
  } catch (const std::exception& e) {
    std::cerr << "soak: FAIL: " << e.what() << "\nsoak: 0 passed, 1 failed" << std::endl;
    return 1;
  }
}
