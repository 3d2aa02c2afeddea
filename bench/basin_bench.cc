// basin-bench: load generator for a running basind, through the public SDK.
//
//   basin-bench --mode stream --producers P --consumers C --size B --messages N|--duration S
//   basin-bench --mode unary  --producers P --consumers C --size B --messages N|--duration S
//   basin-bench --mode pubsub --publishers 1 --subscribers S --size B --messages N
//               [--publish stream|unary]  (a basin::Publisher, the default, or
//               one Publish call per message)
//
// Every payload starts with its send time (steady clock, nanoseconds), so the
// receiver measures end-to-end latency; both ends run on this machine. A
// progress line (sent, confirmed, received, acked per second and latency
// percentiles of that second) goes to stderr every second, and a summary to
// stdout at the end (--json: one JSON object).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "basin/client.h"
#include "basin/consumer.h"
#include "basin/producer.h"
#include "basin/publisher.h"
#include "bench_common.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string addr = "127.0.0.1:7878";
  std::string mode = "unary";
  int producers = 1;
  int consumers = 1;
  int size = 100;
  long messages = 100'000;
  double duration = 0;  // seconds; set: run for this long instead of --messages
  int batch = 500;
  int prefetch = 500;
  long rate = 0;          // messages/s over all producers; 0 = as fast as possible
  long linger_us = 1000;  // Producer linger
  bool keep = false;      // stream mode without consumers: leave the queue full
  bool durable = false;   // a durable queue (basind needs --data-dir)
  long queue_max = -1;    // the queue's max_size; -1: the mode's default
  bool json = false;
  bool unary_publish = false;   // pubsub mode: Publish calls instead of a Publisher
  basin::ClientOptions client;  // --ca, --cert, --key, --server-name, --token
};

[[noreturn]] void Usage(const char* why) {
  std::fprintf(stderr,
               "basin-bench: %s\n"
               "usage: basin-bench [--addr HOST:PORT] [--mode stream|unary|pubsub]\n"
               "                   [--tls] [--ca FILE] [--cert FILE --key FILE] "
               "[--server-name NAME] [--token TOKEN]\n"
               "                   [--batch K] [--prefetch K] [--linger-us U] [--rate R]\n"
               "                   [--keep] (stream mode; --consumers 0 --keep leaves the "
               "queue full)\n"
               "                   [--producers P | --publishers P] [--consumers C | "
               "--subscribers C]\n"
               "                   [--size BYTES] [--messages N | --duration SECONDS] "
               "[--queue-max M] [--durable] [--json]\n"
               "                   [--publish stream|unary] (pubsub mode)\n",
               why);
  std::exit(2);
}

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Usage(("missing value for " + a).c_str());
      return argv[++i];
    };
    if (a == "--addr") {
      o.addr = value();
    } else if (a == "--tls") {
      o.client.tls.enabled = true;
    } else if (a == "--ca") {
      o.client.tls.ca_file = value();
    } else if (a == "--cert") {
      o.client.tls.cert_file = value();
    } else if (a == "--key") {
      o.client.tls.key_file = value();
    } else if (a == "--server-name") {
      o.client.tls.server_name = value();
    } else if (a == "--token") {
      o.client.token = value();
    } else if (a == "--mode") {
      o.mode = value();
    } else if (a == "--producers" || a == "--publishers") {
      o.producers = std::stoi(value());
    } else if (a == "--consumers" || a == "--subscribers") {
      o.consumers = std::stoi(value());
    } else if (a == "--size") {
      o.size = std::stoi(value());
    } else if (a == "--messages") {
      o.messages = std::stol(value());
    } else if (a == "--duration") {
      o.duration = std::stod(value());
    } else if (a == "--rate") {
      o.rate = std::stol(value());
    } else if (a == "--linger-us") {
      o.linger_us = std::stol(value());
    } else if (a == "--queue-max") {
      o.queue_max = std::stol(value());
    } else if (a == "--keep") {
      o.keep = true;
    } else if (a == "--batch") {
      o.batch = std::stoi(value());
    } else if (a == "--prefetch") {
      o.prefetch = std::stoi(value());
    } else if (a == "--publish") {
      const std::string how = value();
      if (how != "stream" && how != "unary") Usage("--publish is stream or unary");
      o.unary_publish = how == "unary";
    } else if (a == "--json") {
      o.json = true;
    } else if (a == "--durable") {
      o.durable = true;
    } else {
      Usage(("unknown argument " + a).c_str());
    }
  }
  if (o.mode != "unary" && o.mode != "pubsub" && o.mode != "stream") {
    Usage("--mode is stream, unary or pubsub");
  }
  if (o.producers < 1 || o.consumers < 0 || o.messages < 1) Usage("counts must be positive");
  if (o.consumers == 0 && o.mode != "stream") Usage("only stream mode runs without consumers");
  if (o.size < 8) Usage("--size is at least 8 (the timestamp)");
  if (o.prefetch < 1) Usage("--prefetch is at least 1");
  if (o.duration < 0) Usage("--duration must be positive");
  if (o.queue_max < -1) Usage("--queue-max is 0 (unbounded) or more");
  if (o.duration > 0 && o.mode == "pubsub") Usage("pubsub mode runs --messages, not --duration");
  if (o.duration > 0 && o.consumers == 0) Usage("--duration needs consumers");
  if (o.duration > 0) o.messages = std::numeric_limits<long>::max();
  return o;
}

using bench::Latencies;
using bench::NowNs;
using bench::Payload;

int64_t SentAt(const std::string& payload) { return bench::SentAt(payload.data()); }

struct Counters {
  std::atomic<long> sent{0};
  std::atomic<long> confirmed{0};  // puts the broker confirmed
  std::atomic<long> received{0};
  std::atomic<long> acked{0};
  std::atomic<long> dropped{0};
  std::atomic<bool> stop{false};  // --duration passed: producers stop
};

// The queue's max_size: --queue-max if given, else the mode's default.
uint64_t QueueMax(const Options& o, uint64_t mode_default) {
  return o.queue_max >= 0 ? static_cast<uint64_t>(o.queue_max) : mode_default;
}

// Producer p's share of n.
long Share(long n, int producers, int p) { return n / producers + (p < n % producers ? 1 : 0); }

void Progress(const Options& o, Counters& c, Latencies& lat, std::atomic<bool>& done) {
  const auto start = Clock::now();
  long last[4] = {0, 0, 0, 0};
  for (int second = 1; !done; ++second) {
    while (!done && Clock::now() < start + std::chrono::seconds(second)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (done) break;
    if (o.duration > 0 && second >= o.duration) c.stop = true;
    const long now[4] = {c.sent, c.confirmed, c.received, c.acked};
    const bench::Percentiles p = lat.SinceLast();
    std::fprintf(stderr,
                 "%3ds  sent %ld/s  confirmed %ld/s  received %ld/s  acked %ld/s  "
                 "p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f us\n",
                 second, now[0] - last[0], now[1] - last[1], now[2] - last[2], now[3] - last[3],
                 p.p50, p.p90, p.p99, p.p999);
    std::copy(now, now + 4, last);
  }
}

// Latency samples reach the shared set in chunks of this many.
constexpr size_t kLatencyChunk = 1000;

// Producers stopped: waits until everything put was task_done, then closes
// the queue so that consumers see the end of the stream.
void FinishQueue(const basin::Queue& q, bool keep) {
  if (keep) return;
  q.join();
  q.close();
}

void RunUnary(const Options& o, Counters& c, Latencies& lat) {
  basin::Client setup(o.addr, o.client);
  const std::string name = "bench." + std::to_string(NowNs());
  auto q = setup.queue(name, {.max_size = QueueMax(o, 10'000), .durable = o.durable});
  std::vector<std::thread> producers, consumers;
  for (int p = 0; p < o.producers; ++p) {
    producers.emplace_back([&, p] {
      auto mine = basin::Client(o.addr, o.client).queue(name);
      const long n = Share(o.messages, o.producers, p);
      for (long i = 0; i < n && !c.stop; ++i) {
        mine.put(Payload(o.size));
        ++c.sent;
        ++c.confirmed;
      }
    });
  }
  for (int i = 0; i < o.consumers; ++i) {
    consumers.emplace_back([&] {
      auto mine = basin::Client(o.addr, o.client).queue(name);
      std::vector<int64_t> local;
      try {
        for (;;) {
          basin::Message m = mine.get();
          local.push_back(NowNs() - SentAt(m.payload()));
          lat.AddEvery(local, kLatencyChunk);
          ++c.received;
          mine.task_done(m);
          ++c.acked;
        }
      } catch (const basin::Closed&) {
      }
      lat.Add(local);
    });
  }
  for (auto& t : producers) t.join();
  FinishQueue(q, false);
  for (auto& t : consumers) t.join();
  setup.delete_queue(name);
}

// Acks go out in batches of 100, as peer-amqp-bench sends RabbitMQ one
// multiple-ack per 100 deliveries, or of half the prefetch plus one if less
// (a consumer that stops to wait sends what it has anyway).
size_t AckBatch(const Options& o) { return static_cast<size_t>(std::min(100, o.prefetch / 2 + 1)); }

// Producers send through Producer (batched Produce streams, confirms by
// callback); consumers read through Consumer (Consume streams with prefetch)
// and ack every message.
void RunStream(const Options& o, Counters& c, Latencies& lat) {
  basin::Client setup(o.addr, o.client);
  const std::string name = "bench." + std::to_string(NowNs());
  // Without consumers the queue must hold everything.
  auto q = setup.queue(
      name, {.max_size = QueueMax(o, o.consumers == 0 ? 0 : 100'000), .durable = o.durable});
  std::vector<std::thread> producers, consumers;
  std::atomic<long> failed{0};
  for (int p = 0; p < o.producers; ++p) {
    producers.emplace_back([&, p] {
      basin::Producer producer(basin::Client(o.addr, o.client), name,
                               {.max_batch_messages = static_cast<size_t>(o.batch),
                                .linger = std::chrono::microseconds(o.linger_us)});
      const long n = Share(o.messages, o.producers, p);
      const auto start = Clock::now();
      const double per_producer_rate = static_cast<double>(o.rate) / o.producers;
      for (long i = 0; i < n && !c.stop; ++i) {
        if (o.rate > 0) bench::Pace(start, i, per_producer_rate);
        producer.send(Payload(o.size), [&](uint64_t, std::exception_ptr error) {
          ++(error ? failed : c.confirmed);
        });
        ++c.sent;
      }
      producer.flush();
    });
  }
  for (int i = 0; i < o.consumers; ++i) {
    consumers.emplace_back([&] {
      basin::Consumer consumer(
          basin::Client(o.addr, o.client), name,
          {.prefetch = static_cast<uint32_t>(o.prefetch), .ack_batch = AckBatch(o)});
      std::vector<int64_t> local;
      try {
        while (auto m = consumer.next()) {
          local.push_back(NowNs() - SentAt(m->payload()));
          lat.AddEvery(local, kLatencyChunk);
          ++c.received;
          consumer.ack(*m);
          ++c.acked;
        }
      } catch (const basin::Closed&) {
      }
      lat.Add(local);
    });
  }
  for (auto& t : producers) t.join();
  if (failed > 0) std::fprintf(stderr, "basin-bench: %ld puts failed\n", failed.load());
  FinishQueue(q, o.keep);
  for (auto& t : consumers) t.join();
  if (o.keep) {
    std::fprintf(stderr, "basin-bench: left %ld messages in queue %s\n", c.sent.load(),
                 name.c_str());
  } else {
    setup.delete_queue(name);
  }
}

void RunPubSub(const Options& o, Counters& c, Latencies& lat) {
  const std::string topic = "bench." + std::to_string(NowNs());
  std::vector<basin::Subscription> subs;
  for (int i = 0; i < o.consumers; ++i) {
    subs.push_back(
        basin::Client(o.addr, o.client)
            .subscribe({topic}, {.buffer_messages = 1'000'000, .buffer_bytes = 256u << 20}));
  }
  std::vector<std::thread> readers;
  for (int i = 0; i < o.consumers; ++i) {
    readers.emplace_back([&, i] {
      std::vector<int64_t> local;
      long got = 0;
      while (auto m = subs[static_cast<size_t>(i)].next()) {
        c.dropped += static_cast<long>(m->dropped_before);
        got += 1 + static_cast<long>(m->dropped_before);
        local.push_back(NowNs() - SentAt(m->payload));
        ++c.received;
        if (got >= o.messages) break;
      }
      lat.Add(local);
    });
  }
  std::vector<std::thread> publishers;
  for (int p = 0; p < o.producers; ++p) {
    publishers.emplace_back([&, p] {
      basin::Client mine(o.addr, o.client);
      const long n = o.messages / o.producers + (p < o.messages % o.producers ? 1 : 0);
      if (o.unary_publish) {
        for (long i = 0; i < n; ++i) {
          mine.publish(topic, Payload(o.size));
          ++c.sent;
        }
        return;
      }
      basin::Publisher publisher(mine, {.max_batch_messages = static_cast<size_t>(o.batch),
                                        .linger = std::chrono::microseconds(o.linger_us)});
      for (long i = 0; i < n; ++i) {
        publisher.publish(topic, Payload(o.size));
        ++c.sent;
      }
      const basin::PublishSummary s = publisher.flush();
      if (s.failed > 0) std::fprintf(stderr, "basin-bench: %lu publishes failed\n", s.failed);
    });
  }
  for (auto& t : publishers) t.join();
  for (auto& t : readers) t.join();
}

}  // namespace

int main(int argc, char** argv) {
  // Before any thread: the SDK's recommended poller for a client process
  // (client.h). GRPC_POLL_STRATEGY=epoll1 in the environment measures gRPC's default.
  basin::use_poll_poller();
  const Options o = Parse(argc, argv);
  Counters c;
  Latencies lat;
  std::atomic<bool> done{false};
  std::thread progress([&] { Progress(o, c, lat, done); });
  const auto start = Clock::now();
  try {
    if (o.mode == "unary") {
      RunUnary(o, c, lat);
    } else if (o.mode == "stream") {
      RunStream(o, c, lat);
    } else {
      RunPubSub(o, c, lat);
    }
  } catch (const basin::Error& e) {
    done = true;
    progress.join();
    std::fprintf(stderr, "basin-bench: %s (%s)\n", e.what(), e.reason().c_str());
    return 1;
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  done = true;
  progress.join();
  const auto rate = [secs](const std::atomic<long>& n) { return static_cast<double>(n) / secs; };
  const bench::Percentiles p = lat.All();
  if (o.json) {
    std::printf(
        "{\"mode\":\"%s\",\"producers\":%d,\"consumers\":%d,\"size\":%d,\"messages\":%ld,"
        "\"seconds\":%.3f,\"sent_per_sec\":%.0f,\"confirmed_per_sec\":%.0f,"
        "\"received_per_sec\":%.0f,\"acked_per_sec\":%.0f,\"acked\":%ld,\"dropped\":%ld,"
        "\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"cpu_s\":%.3f}\n",
        o.mode.c_str(), o.producers, o.consumers, o.size, c.sent.load(), secs, rate(c.sent),
        rate(c.confirmed), rate(c.received), rate(c.acked), c.acked.load(), c.dropped.load(), p.p50,
        p.p90, p.p99, p.p999, bench::CpuSeconds());
  } else {
    std::printf("%s: %d x %d, %d-byte messages, %ld messages in %.2f s\n", o.mode.c_str(),
                o.producers, o.consumers, o.size, c.sent.load(), secs);
    std::printf(
        "  sent %.0f msg/s, confirmed %.0f msg/s, received %.0f msg/s, acked %.0f msg/s "
        "(%ld acked, %ld dropped)\n",
        rate(c.sent), rate(c.confirmed), rate(c.received), rate(c.acked), c.acked.load(),
        c.dropped.load());
    std::printf("  latency p50 %.0f us, p90 %.0f us, p99 %.0f us, p99.9 %.0f us\n", p.p50, p.p90,
                p.p99, p.p999);
  }
  return 0;
}
