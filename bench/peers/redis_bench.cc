// Load client for Redis lists, the way our users use them: producers LPUSH
// pipelined by 100; consumers RPOP with a count of 100 (throughput), or BRPOP
// one at a time (with --rate, for latency). No acknowledgements: Redis has none.
// With --mode pubsub: each consumer SUBSCRIBEs to one channel and producers
// PUBLISH to it pipelined by 100; the count is deliveries (messages x
// subscribers).
#include <hiredis/hiredis.h>

#include <atomic>
#include <thread>

#include "bench_common.h"

namespace {

// Producer `p`'s share of the messages: `command` ("LPUSH" or "PUBLISH") to
// `key`, pipelined by `pipeline`, paced at `rate` msg/s over all producers (0:
// as fast as possible).
void Produce(const bench::Options& o, int p, const char* command, const std::string& key,
             long pipeline, std::chrono::steady_clock::time_point start) {
  redisContext* c = redisConnect(o.host.c_str(), o.port);
  const long n = o.messages / o.producers + (p < o.messages % o.producers ? 1 : 0);
  for (long i = 0; i < n;) {
    long batch = 0;
    for (; batch < pipeline && i < n; ++batch, ++i) {
      bench::Pace(start, i, static_cast<double>(o.rate) / o.producers);
      const std::string payload = bench::Payload(o.size);
      redisAppendCommand(c, "%s %s %b", command, key.c_str(), payload.data(), payload.size());
    }
    for (long k = 0; k < batch; ++k) {
      void* reply = nullptr;
      redisGetReply(c, &reply);
      freeReplyObject(reply);
    }
  }
  redisFree(c);
}

// Deliveries per second through one channel: `o.consumers` subscribers, each
// reading until it has every message (or its connection drops: Redis
// disconnects a subscriber past its output buffer limit).
void RunPubSub(const bench::Options& o, const std::string& channel, std::atomic<long>* received,
               bench::Latencies* lat) {
  std::vector<redisContext*> subs;
  for (int i = 0; i < o.consumers; ++i) {
    redisContext* c = redisConnect(o.host.c_str(), o.port);
    auto* r = static_cast<redisReply*>(redisCommand(c, "SUBSCRIBE %s", channel.c_str()));
    freeReplyObject(r);  // the confirmation: the subscription is live
    const timeval ten_seconds{10, 0};
    redisSetTimeout(c, ten_seconds);
    subs.push_back(c);
  }
  std::vector<std::thread> threads;
  for (redisContext* c : subs) {
    threads.emplace_back([&, c] {
      std::vector<int64_t> local;
      for (long got = 0; got < o.messages; ++got) {
        void* reply = nullptr;
        if (redisGetReply(c, &reply) != REDIS_OK) break;
        auto* r = static_cast<redisReply*>(reply);
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3) {
          local.push_back(bench::NowNs() - bench::SentAt(r->element[2]->str));
          ++*received;
        }
        freeReplyObject(r);
      }
      lat->Add(local);
      redisFree(c);
    });
  }
  const auto start = std::chrono::steady_clock::now();
  for (int p = 0; p < o.producers; ++p) {
    threads.emplace_back([&, p] { Produce(o, p, "PUBLISH", channel, 100, start); });
  }
  for (auto& t : threads) t.join();
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options o = bench::Parse(argc, argv);
  const std::string key = "bench:" + std::to_string(bench::NowNs());
  std::atomic<long> received{0};
  bench::Latencies lat;
  const auto start = std::chrono::steady_clock::now();
  if (o.mode == "pubsub") {
    RunPubSub(o, key, &received, &lat);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    bench::Report("redis", o, secs, received.load(), lat);
    return 0;
  }
  std::vector<std::thread> threads;
  for (int p = 0; p < o.producers; ++p) {
    threads.emplace_back([&, p] { Produce(o, p, "LPUSH", key, o.rate > 0 ? 1 : 100, start); });
  }
  for (int i = 0; i < o.consumers; ++i) {
    threads.emplace_back([&] {
      redisContext* c = redisConnect(o.host.c_str(), o.port);
      std::vector<int64_t> local;
      while (received.load() < o.messages) {
        auto* r =
            static_cast<redisReply*>(o.rate > 0 ? redisCommand(c, "BRPOP %s 1", key.c_str())
                                                : redisCommand(c, "RPOP %s 100", key.c_str()));
        if (r != nullptr && r->type == REDIS_REPLY_ARRAY) {
          const bool brpop = o.rate > 0;
          for (size_t k = brpop ? 1 : 0; k < r->elements; ++k) {
            local.push_back(bench::NowNs() - bench::SentAt(r->element[k]->str));
            ++received;
          }
        }
        freeReplyObject(r);
      }
      lat.Add(local);
      redisFree(c);
    });
  }
  for (auto& t : threads) t.join();
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  bench::Report("redis", o, secs, received.load(), lat);
  return 0;
}
