// basin-bench: load generator for a running basind, through the public SDK.
//
//   basin-bench --mode unary  --producers P --consumers C --size B --messages N
//   basin-bench --mode pubsub --publishers 1 --subscribers S --size B --messages N
//
// Every payload starts with its send time (steady clock, nanoseconds), so the
// receiver measures end-to-end latency; both ends run on this machine. A
// progress line is printed every second and a summary at the end (--json for
// one JSON object instead).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "basin/client.h"
#include "basin/consumer.h"
#include "basin/producer.h"
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
  int batch = 500;
  int prefetch = 500;
  long rate = 0;          // messages/s over all producers; 0 = as fast as possible
  long linger_us = 1000;  // Producer linger
  bool keep = false;      // stream mode without consumers: leave the queue full
  bool json = false;
};

[[noreturn]] void Usage(const char* why) {
  std::fprintf(stderr,
               "basin-bench: %s\n"
               "usage: basin-bench [--addr HOST:PORT] [--mode stream|unary|pubsub]\n"
               "                   [--batch K] [--prefetch K] [--linger-us U] [--rate R]\n"
               "                   [--keep] (stream mode; --consumers 0 --keep leaves the "
               "queue full)\n"
               "                   [--producers P | --publishers P] [--consumers C | "
               "--subscribers C]\n"
               "                   [--size BYTES] [--messages N] [--json]\n",
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
    } else if (a == "--rate") {
      o.rate = std::stol(value());
    } else if (a == "--linger-us") {
      o.linger_us = std::stol(value());
    } else if (a == "--keep") {
      o.keep = true;
    } else if (a == "--batch") {
      o.batch = std::stoi(value());
    } else if (a == "--prefetch") {
      o.prefetch = std::stoi(value());
    } else if (a == "--json") {
      o.json = true;
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
  return o;
}

using bench::Latencies;
using bench::NowNs;
using bench::Payload;

int64_t SentAt(const std::string& payload) { return bench::SentAt(payload.data()); }

struct Counters {
  std::atomic<long> sent{0};
  std::atomic<long> received{0};
  std::atomic<long> acked{0};
  std::atomic<long> dropped{0};
};

void Progress(const Options& o, Counters& c, std::atomic<bool>& done) {
  long last_sent = 0, last_received = 0;
  while (!done) {
    for (int i = 0; i < 100 && !done; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const long s = c.sent, r = c.received;
    if (!o.json) {
      std::fprintf(stderr, "  sent %ld/s, received %ld/s (total %ld / %ld)\n", s - last_sent,
                   r - last_received, s, r);
    }
    last_sent = s;
    last_received = r;
  }
}

void RunUnary(const Options& o, Counters& c, Latencies& lat) {
  basin::Client setup(o.addr);
  const std::string name = "bench." + std::to_string(NowNs());
  auto q = setup.queue(name, {.max_size = 10'000});
  const long expected = o.messages;
  std::vector<std::thread> threads;
  for (int p = 0; p < o.producers; ++p) {
    threads.emplace_back([&, p] {
      auto mine = basin::Client(o.addr).queue(name);
      const long n = expected / o.producers + (p < expected % o.producers ? 1 : 0);
      for (long i = 0; i < n; ++i) {
        mine.put(Payload(o.size));
        ++c.sent;
      }
    });
  }
  for (int i = 0; i < o.consumers; ++i) {
    threads.emplace_back([&] {
      auto mine = basin::Client(o.addr).queue(name);
      std::vector<int64_t> local;
      try {
        for (;;) {
          basin::Message m = mine.get();
          local.push_back(NowNs() - SentAt(m.payload()));
          ++c.received;
          mine.task_done(m);
          ++c.acked;
          if (c.acked == expected) mine.close();
        }
      } catch (const basin::Closed&) {
      }
      lat.Add(local);
    });
  }
  for (auto& t : threads) t.join();
  setup.delete_queue(name);
}

// Producers send through Producer (batched Produce streams); consumers read
// through Consumer (Consume streams with prefetch) and ack every message.
void RunStream(const Options& o, Counters& c, Latencies& lat) {
  basin::Client setup(o.addr);
  const std::string name = "bench." + std::to_string(NowNs());
  // Without consumers the queue must hold everything.
  auto q = setup.queue(name, {.max_size = o.consumers == 0 ? 0u : 100'000u});
  const long expected = o.messages;
  std::vector<std::thread> threads;
  for (int p = 0; p < o.producers; ++p) {
    threads.emplace_back([&, p] {
      basin::Producer producer(basin::Client(o.addr), name,
                               {.max_batch_messages = static_cast<size_t>(o.batch),
                                .linger = std::chrono::microseconds(o.linger_us)});
      const long n = expected / o.producers + (p < expected % o.producers ? 1 : 0);
      const auto start = Clock::now();
      const double per_producer_rate = static_cast<double>(o.rate) / o.producers;
      for (long i = 0; i < n; ++i) {
        if (o.rate > 0) bench::Pace(start, i, per_producer_rate);
        producer.send(Payload(o.size));
        ++c.sent;
      }
      producer.flush();
    });
  }
  for (int i = 0; i < o.consumers; ++i) {
    threads.emplace_back([&] {
      basin::Consumer consumer(basin::Client(o.addr), name,
                               {.prefetch = static_cast<uint32_t>(o.prefetch),
                                .ack_batch = static_cast<size_t>(o.prefetch / 2 + 1)});
      std::vector<int64_t> local;
      try {
        while (auto m = consumer.next()) {
          local.push_back(NowNs() - SentAt(m->payload()));
          ++c.received;
          consumer.ack(*m);
          if (++c.acked == expected) {
            consumer.flush();
            q.close();
          }
        }
      } catch (const basin::Closed&) {
      }
      lat.Add(local);
    });
  }
  for (auto& t : threads) t.join();
  if (o.keep) {
    std::fprintf(stderr, "basin-bench: left %ld messages in queue %s\n", expected, name.c_str());
  } else {
    setup.delete_queue(name);
  }
}

void RunPubSub(const Options& o, Counters& c, Latencies& lat) {
  const std::string topic = "bench." + std::to_string(NowNs());
  std::vector<basin::Subscription> subs;
  for (int i = 0; i < o.consumers; ++i) {
    subs.push_back(basin::Client(o.addr).subscribe(
        {topic}, {.buffer_messages = 1'000'000, .buffer_bytes = 256u << 20}));
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
      basin::Client mine(o.addr);
      const long n = o.messages / o.producers + (p < o.messages % o.producers ? 1 : 0);
      for (long i = 0; i < n; ++i) {
        mine.publish(topic, Payload(o.size));
        ++c.sent;
      }
    });
  }
  for (auto& t : publishers) t.join();
  for (auto& t : readers) t.join();
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = Parse(argc, argv);
  Counters c;
  Latencies lat;
  std::atomic<bool> done{false};
  std::thread progress([&] { Progress(o, c, done); });
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
  const double sent_rate = static_cast<double>(c.sent) / secs;
  const double recv_rate = static_cast<double>(c.received) / secs;
  if (o.json) {
    std::printf(
        "{\"mode\":\"%s\",\"producers\":%d,\"consumers\":%d,\"size\":%d,\"messages\":%ld,"
        "\"seconds\":%.3f,\"sent_per_sec\":%.0f,\"received_per_sec\":%.0f,\"acked\":%ld,"
        "\"dropped\":%ld,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f}\n",
        o.mode.c_str(), o.producers, o.consumers, o.size, o.messages, secs, sent_rate, recv_rate,
        c.acked.load(), c.dropped.load(), lat.P(0.5), lat.P(0.9), lat.P(0.99), lat.P(0.999));
  } else {
    std::printf("%s: %d x %d, %d-byte messages, %ld messages in %.2f s\n", o.mode.c_str(),
                o.producers, o.consumers, o.size, o.messages, secs);
    std::printf("  sent %.0f msg/s, received %.0f msg/s, acked %ld, dropped %ld\n", sent_rate,
                recv_rate, c.acked.load(), c.dropped.load());
    std::printf("  latency p50 %.0f us, p90 %.0f us, p99 %.0f us, p99.9 %.0f us\n", lat.P(0.5),
                lat.P(0.9), lat.P(0.99), lat.P(0.999));
  }
  return 0;
}
