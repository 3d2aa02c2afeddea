// The soak test's workers: each runs one kind of client against the broker
// until its stop flag is set, recording every id it sends, has confirmed,
// sees refused, receives and finishes in the Ledger.
//
//   stream producer   basin::Producer, random batching; destroyed with a short
//                     close_timeout mid-batch half of the time
//   stream consumer   basin::Consumer, random prefetch/ack_batch/ack_timeout;
//                     acks, releases, extends or holds; ends by close(),
//                     cancel() or destruction, often with messages unacked
//   unary producer    put / put_nowait / timed put / put_batch (0 = nowait)
//   unary consumer    get / get_nowait / get_batch with random timeouts and
//                     leases; task_done, release, extend, or lets leases expire
//   raw               raw gRPC Put, Get, Produce and Consume, cancelled at a
//                     random moment (TryCancel) or run into a short deadline
//   child producer,   a child process (`basin_soak --child ...`) producing or
//   child consumer    consuming, SIGKILLed at a random moment; it reports
//                     what it saw on stdout, one line per event, before acting
//
// (workers.cc holds the SDK kinds, raw_workers.cc and child_workers.cc the
// others.) Every choice comes from the worker's own seeded generator. Pauses
// between operations shape the load; nothing here sleeps to wait for a
// condition.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <random>
#include <string>

#include "ledger.h"

namespace basin::soak {

struct SoakContext {
  std::string address;
  std::string self_path;  // this binary, for --child
  Ledger* ledger = nullptr;
  Counters* counters = nullptr;
  std::atomic<bool> stop_producing{false};
  std::atomic<bool> stop_consuming{false};
  // One fork at a time: a child then inherits no other child's pipe ends, so
  // each child's stdout reaches EOF as soon as that child dies.
  std::mutex spawn_mu;
};

enum class WorkerKind {
  kStreamProducer,
  kStreamConsumer,
  kUnaryProducer,
  kUnaryConsumer,
  kRaw,
  kChildProducer,
  kChildConsumer,
};

const char* KindName(WorkerKind kind);
// Producers (and raw workers, which also put) stop first; consumers keep
// going until they have stopped, so nothing waits on a full queue for ever.
bool StopsWithProducers(WorkerKind kind);

class Rng {
 public:
  explicit Rng(uint64_t seed) : g_(seed) {}
  uint64_t Uniform(uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi)(g_);
  }
  bool Chance(double p) { return std::uniform_real_distribution<double>(0, 1)(g_) < p; }
  std::chrono::milliseconds Ms(int64_t lo, int64_t hi) {
    return std::chrono::milliseconds(std::uniform_int_distribution<int64_t>(lo, hi)(g_));
  }
  uint64_t Next() { return g_(); }

 private:
  std::mt19937_64 g_;
};

// Runs worker `index` of `kind` until its stop flag is set.
void RunWorker(SoakContext& ctx, uint32_t index, WorkerKind kind, uint64_t seed);

// Consumes every queue until nothing is unfinished anywhere, recording each
// delivery. Returns false if that did not happen within `budget`.
bool DrainAll(SoakContext& ctx, std::chrono::milliseconds budget);

// Entry of `basin_soak --child MODE ADDR QUEUE IDBASE SEED` (argv from MODE on).
int ChildMain(int argc, char** argv);

}  // namespace basin::soak
