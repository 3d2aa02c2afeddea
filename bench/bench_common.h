// Shared by basin-bench and the peer load clients: timestamps in payloads,
// latency percentiles, pacing; and, for the peers, their flags and the
// one-line JSON result compare.sh reads.
#pragma once

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace bench {

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  int producers = 1;
  int consumers = 1;
  int size = 100;
  long messages = 100'000;
  long rate = 0;  // messages/s; 0 = as fast as possible
  // Peers' durable mode (--durable 1): RabbitMQ durable queue, persistent
  // messages, publisher confirms. (Redis's durability is the server's config.)
  bool durable = false;
  // Peers' workload (--mode): "lists" (work queues) or "pubsub" (Redis
  // PUBLISH/SUBSCRIBE: producers publish, each consumer subscribes).
  std::string mode = "lists";
};

inline Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--host")
      o.host = v;
    else if (a == "--port")
      o.port = std::stoi(v);
    else if (a == "--producers")
      o.producers = std::stoi(v);
    else if (a == "--consumers")
      o.consumers = std::stoi(v);
    else if (a == "--size")
      o.size = std::stoi(v);
    else if (a == "--messages")
      o.messages = std::stol(v);
    else if (a == "--rate")
      o.rate = std::stol(v);
    else if (a == "--durable")
      o.durable = v == "1";
    else if (a == "--mode")
      o.mode = v;
    else {
      std::fprintf(stderr, "unknown flag %s\n", a.c_str());
      std::exit(2);
    }
  }
  return o;
}

inline int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

inline std::string Payload(int size) {
  std::string p(static_cast<size_t>(size), 'x');
  const int64_t now = NowNs();
  std::memcpy(p.data(), &now, sizeof now);
  return p;
}

inline int64_t SentAt(const char* data) {
  int64_t t = 0;
  std::memcpy(&t, data, sizeof t);
  return t;
}

struct Percentiles {
  double p50 = 0, p90 = 0, p99 = 0, p999 = 0;  // microseconds
};

// Percentile q of `v` in microseconds (reorders v).
inline double Percentile(std::vector<int64_t>& v, double q) {
  if (v.empty()) return 0;
  const auto k = static_cast<size_t>(q * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return static_cast<double>(v[k]) / 1000.0;
}

// End-to-end latencies in nanoseconds. Receivers add theirs in chunks, so a
// progress line can show the percentiles of the last second.
class Latencies {
 public:
  void Add(const std::vector<int64_t>& local) {
    std::lock_guard lock(mu_);
    all_.insert(all_.end(), local.begin(), local.end());
  }
  // Adds and clears `local` once it holds `chunk` samples (or always, with 0).
  void AddEvery(std::vector<int64_t>& local, size_t chunk) {
    if (local.size() < chunk) return;
    Add(local);
    local.clear();
  }
  double P(double q) {
    std::lock_guard lock(mu_);
    return Percentile(all_, q);
  }
  Percentiles All() { return {P(0.5), P(0.9), P(0.99), P(0.999)}; }
  // The samples added since the last call.
  Percentiles SinceLast() {
    std::vector<int64_t> recent;
    {
      std::lock_guard lock(mu_);
      recent.assign(all_.begin() + static_cast<long>(std::min(mark_, all_.size())), all_.end());
      mark_ = all_.size();
    }
    Percentiles p;
    p.p50 = Percentile(recent, 0.5);
    p.p90 = Percentile(recent, 0.9);
    p.p99 = Percentile(recent, 0.99);
    p.p999 = Percentile(recent, 0.999);
    return p;
  }

 private:
  std::mutex mu_;
  std::vector<int64_t> all_;
  size_t mark_ = 0;
};

// CPU seconds (user + system) this process has used so far.
inline double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto secs = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return secs(u.ru_utime) + secs(u.ru_stime);
}

// Paces message i of a producer that sends `rate` messages/s.
inline void Pace(std::chrono::steady_clock::time_point start, long i, double rate) {
  if (rate <= 0) return;
  std::this_thread::sleep_until(start +
                                std::chrono::nanoseconds(static_cast<int64_t>(1e9 * i / rate)));
}

inline void Report(const char* peer, const Options& o, double secs, long received, Latencies& lat) {
  std::printf(
      "{\"peer\":\"%s\",\"producers\":%d,\"consumers\":%d,\"messages\":%ld,\"seconds\":%.3f,"
      "\"received_per_sec\":%.0f,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,"
      "\"p999_us\":%.1f}\n",
      peer, o.producers, o.consumers, o.messages, secs, static_cast<double>(received) / secs,
      lat.P(0.5), lat.P(0.9), lat.P(0.99), lat.P(0.999));
}

}  // namespace bench
