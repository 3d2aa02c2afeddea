// The SDK workers (stream and unary producers and consumers), the worker
// dispatch and the drain; the raw gRPC and child-process workers are in
// raw_workers.cc and child_workers.cc.
#include "workers.h"

#include <condition_variable>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "basin/client.h"
#include "basin/consumer.h"
#include "basin/producer.h"
#include "queues.h"
#include "worker_support.h"

namespace basin::soak {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Calls `fire` once at `at`, unless disarmed first.
class Alarm {
 public:
  Alarm(Clock::time_point at, std::function<void()> fire)
      : thread_([this, at, fire = std::move(fire)] {
          std::unique_lock lock(mu_);
          if (cv_.wait_until(lock, at, [this] { return disarmed_; })) return;
          fired_ = true;
          fire();
        }) {}
  ~Alarm() { Disarm(); }
  Alarm(const Alarm&) = delete;
  Alarm& operator=(const Alarm&) = delete;

  // Returns whether it fired; afterwards it never will.
  bool Disarm() {
    {
      std::lock_guard lock(mu_);
      disarmed_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    return fired_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool disarmed_ = false;
  bool fired_ = false;
  std::thread thread_;  // last: started once the rest exists
};

// A put whose outcome the SDK reported as an exception.
void PutFailed(SoakContext& ctx, const std::vector<uint64_t>& ids, int q) {
  try {
    throw;
  } catch (const Full&) {  // BrokerMemory too
    ctx.counters->Add(Count::kFull);
    for (uint64_t id : ids) ctx.ledger->Refused(id, q);
  } catch (const TooManyWaiters&) {
    for (uint64_t id : ids) ctx.ledger->Refused(id, q);
  } catch (const InvalidArgument&) {  // a batch above max_size: all or nothing
    for (uint64_t id : ids) ctx.ledger->Refused(id, q);
  } catch (const std::exception&) {
    ctx.counters->Add(Count::kOtherErrors);
    ctx.counters->Add(Count::kUnknownOutcome, ids.size());
  }
}

// ---- stream producer -------------------------------------------------------

struct ConfirmTracker {
  std::mutex mu;
  std::condition_variable cv;
  uint64_t outstanding = 0;
  int64_t last_seq = -1;
  uint64_t last_message_id = 0;
};

void StreamProducer(SoakContext& ctx, Worker& w) {
  std::optional<Client> client;
  while (!ctx.stop_producing) {
    if (!client || w.rng.Chance(0.3)) {
      if (client) ctx.counters->Add(Count::kClientDrops);
      client.emplace(ctx.address);
    }
    const int q = ProducibleQueue(w.rng);
    const uint32_t inc = w.NextIncarnation();
    const bool abrupt = w.rng.Chance(0.5);
    ProducerOptions opts;
    const size_t batch_sizes[] = {1, 8, 64, 500};
    opts.max_batch_messages = batch_sizes[w.rng.Uniform(0, 3)];
    opts.linger = std::chrono::microseconds(w.rng.Uniform(0, 3000));
    opts.max_in_flight_batches = w.rng.Uniform(1, 16);
    opts.close_timeout = abrupt ? w.rng.Ms(0, 100) : milliseconds(5000);
    ctx.counters->Add(Count::kProducerSessions);
    ConfirmTracker t;  // outlives the producer: ~Producer resolves every confirm
    try {
      Producer p(*client, kQueues[static_cast<size_t>(q)].name, opts);
      const uint32_t n = static_cast<uint32_t>(w.rng.Uniform(1, 1500));
      for (uint32_t seq = 0; seq < n && !ctx.stop_producing; ++seq) {
        const uint64_t id = MakeId(w.index, inc, seq);
        ctx.ledger->Sent(id, q);
        {
          std::lock_guard lock(t.mu);
          ++t.outstanding;
        }
        p.send(OutgoingMessage{MakePayload(id), IdHeaders(id), {}},
               [&ctx, &t, id, q, seq](uint64_t message_id, std::exception_ptr error) {
                 std::lock_guard lock(t.mu);
                 if (static_cast<int64_t>(seq) <= t.last_seq) {
                   ctx.ledger->Fail("Producer confirmed message " + std::to_string(seq) +
                                    " after " + std::to_string(t.last_seq) + " (not send order)");
                 }
                 t.last_seq = seq;
                 if (!error) {
                   if (message_id <= t.last_message_id) {
                     ctx.ledger->Fail("Producer confirms gave id " + std::to_string(message_id) +
                                      " after " + std::to_string(t.last_message_id) + " in " +
                                      kQueues[static_cast<size_t>(q)].name);
                   }
                   t.last_message_id = message_id;
                   ctx.ledger->Confirmed(id, q);
                 } else {
                   ctx.counters->Add(Count::kUnknownOutcome);
                 }
                 --t.outstanding;
                 t.cv.notify_all();
               });
        MaybePause(w.rng, 0.002, 20);
      }
      if (!abrupt) {
        // Every confirm, for up to 10 s; at the end of the run, no longer.
        const auto until = Clock::now() + std::chrono::seconds(10);
        std::unique_lock lock(t.mu);
        while (!t.cv.wait_for(lock, milliseconds(100), [&t] { return t.outstanding == 0; }) &&
               !ctx.stop_producing && Clock::now() < until) {
        }
      } else {
        std::lock_guard lock(t.mu);
        if (t.outstanding > 0) {
          ctx.counters->Add(Count::kProducerDrops);
          ctx.counters->Add(Count::kUnconfirmedAtDrop, t.outstanding);
        }
      }
    } catch (const std::exception&) {
      ctx.counters->Add(Count::kOtherErrors);
    }
  }
}

// ---- stream consumer -------------------------------------------------------

void StreamConsumer(SoakContext& ctx, Worker& w) {
  std::optional<Client> client;
  while (!ctx.stop_consuming) {
    if (!client || w.rng.Chance(0.3)) {
      if (client) ctx.counters->Add(Count::kClientDrops);
      client.emplace(ctx.address);
    }
    const int q = AnyQueue(w.rng);
    ConsumerOptions opts;
    const uint32_t prefetches[] = {1, 16, 100, 500};
    opts.prefetch = prefetches[w.rng.Uniform(0, 3)];
    opts.ack_batch = w.rng.Uniform(1, 64);
    if (w.rng.Chance(0.2)) opts.ack_timeout = w.rng.Ms(300, 3000);
    opts.close_timeout = milliseconds(5000);
    const uint64_t limit = w.rng.Uniform(1, 1500);
    ctx.counters->Add(Count::kConsumerSessions);
    try {
      auto consumer =
          std::make_unique<Consumer>(*client, kQueues[static_cast<size_t>(q)].name, opts);
      std::vector<std::pair<uint64_t, uint32_t>> acked;
      bool cancelled = false;
      {
        Alarm alarm(Clock::now() + w.rng.Ms(200, 3000), [&consumer] { consumer->cancel(); });
        for (uint64_t k = 0; k < limit && !ctx.stop_consuming; ++k) {
          std::optional<Message> m = consumer->next();
          if (!m) break;
          Record(ctx, q, *m);
          const uint64_t r = w.rng.Uniform(0, 99);
          if (r < 80) {
            consumer->ack(*m);
            acked.emplace_back(IdOf(m->headers()), m->delivery_count());
            ctx.counters->Add(Count::kAcked);
          } else if (r < 87) {
            consumer->release(*m);
            ctx.counters->Add(Count::kReleased);
          } else if (r < 92) {
            consumer->extend(*m);
            consumer->ack(*m);
            acked.emplace_back(IdOf(m->headers()), m->delivery_count());
            ctx.counters->Add(Count::kExtended);
          } else {
            ctx.counters->Add(Count::kLeftToExpire);  // held: back when the stream ends
          }
        }
        cancelled = alarm.Disarm();
      }
      const uint64_t end = w.rng.Uniform(0, 2);
      if (end == 0 && !cancelled) {
        // close() applies the acks before the stream's end requeues the rest,
        // so an acked message never comes again — provided close did not run
        // into its timeout, the stream never broke, and no ack_timeout raced.
        const auto start = Clock::now();
        consumer->close();
        const bool in_time = Clock::now() - start < opts.close_timeout - milliseconds(1000);
        if (in_time && consumer->reconnects() == 0 && opts.ack_timeout.count() == 0) {
          for (const auto& [id, dc] : acked) ctx.ledger->Finished(id, q, dc);
        }
        ctx.counters->Add(Count::kConsumerCloses);
      } else if (end == 1) {
        consumer->cancel();  // pending acks lost: those messages come again
        ctx.counters->Add(Count::kConsumerCancels);
      } else {
        ctx.counters->Add(Count::kConsumerCloses);  // the destructor closes
      }
      consumer.reset();
    } catch (const std::exception&) {
      ctx.counters->Add(Count::kOtherErrors);
    }
  }
}

// ---- unary producer --------------------------------------------------------

void UnaryProducer(SoakContext& ctx, Worker& w) {
  std::optional<Client> client;
  uint32_t inc = 0;
  uint32_t seq = 0;
  while (!ctx.stop_producing) {
    if (!client || w.rng.Chance(0.01)) {
      if (client) ctx.counters->Add(Count::kClientDrops);
      client.emplace(ctx.address);
      inc = w.NextIncarnation();
      seq = 0;
    }
    const int q = ProducibleQueue(w.rng);
    const Queue queue = client->queue(kQueues[static_cast<size_t>(q)].name);
    const uint64_t r = w.rng.Uniform(0, 99);
    if (r < 70) {
      const uint64_t id = MakeId(w.index, inc, seq++);
      ctx.ledger->Sent(id, q);
      try {
        if (r < 25) {
          queue.put_nowait(MakePayload(id), IdHeaders(id));
        } else {
          queue.put(MakePayload(id), w.rng.Ms(1, 2000), IdHeaders(id));
        }
        ctx.ledger->Confirmed(id, q);
      } catch (...) {
        PutFailed(ctx, {id}, q);
      }
    } else {
      std::vector<uint64_t> ids;
      std::vector<OutgoingMessage> batch;
      const uint64_t n = w.rng.Uniform(1, 30);  // above a small queue's max_size now and then
      for (uint64_t i = 0; i < n; ++i) {
        const uint64_t id = MakeId(w.index, inc, seq++);
        ctx.ledger->Sent(id, q);
        ids.push_back(id);
        batch.push_back(OutgoingMessage{MakePayload(id), IdHeaders(id), {}});
      }
      try {
        const auto outcomes = queue.put_batch(batch, w.rng.Ms(0, 1500));
        for (size_t i = 0; i < ids.size(); ++i) {
          if (i < outcomes.size() && outcomes[i].ok()) {
            ctx.ledger->Confirmed(ids[i], q);
          } else {
            ctx.ledger->Refused(ids[i], q);
          }
        }
      } catch (...) {
        PutFailed(ctx, ids, q);
      }
    }
    MaybePause(w.rng, 0.05, 20);
  }
}

// ---- unary consumer --------------------------------------------------------

void UnaryConsumer(SoakContext& ctx, Worker& w) {
  std::optional<Client> client;
  while (!ctx.stop_consuming) {
    if (!client || w.rng.Chance(0.03)) {
      if (client) ctx.counters->Add(Count::kClientDrops);
      client.emplace(ctx.address);
    }
    const int q = AnyQueue(w.rng);
    const Queue queue = client->queue(kQueues[static_cast<size_t>(q)].name);
    std::vector<Message> got;
    try {
      const uint64_t r = w.rng.Uniform(0, 99);
      if (r < 20) {
        got.push_back(queue.get_nowait());
      } else if (r < 70) {
        got.push_back(queue.get(w.rng.Ms(10, 1500), w.rng.Ms(300, 3000)));
      } else {
        got = queue.get_batch(w.rng.Uniform(2, 50), w.rng.Ms(0, 1000));
      }
    } catch (const Empty&) {
      ctx.counters->Add(Count::kEmpty);
    } catch (const std::exception&) {
      ctx.counters->Add(Count::kOtherErrors);
    }
    for (const Message& m : got) {
      Record(ctx, q, m);
      try {
        const uint64_t r = w.rng.Uniform(0, 99);
        if (r < 65) {
          queue.task_done(m);
          ctx.ledger->Finished(IdOf(m.headers()), q, m.delivery_count());
          ctx.counters->Add(Count::kAcked);
        } else if (r < 75) {
          m.release();
          ctx.counters->Add(Count::kReleased);
        } else if (r < 85) {
          m.extend(w.rng.Ms(500, 3000));
          queue.task_done(m);
          ctx.ledger->Finished(IdOf(m.headers()), q, m.delivery_count());
          ctx.counters->Add(Count::kExtended);
        } else {
          ctx.counters->Add(Count::kLeftToExpire);
        }
      } catch (const DeliveryError&) {
        // The lease ended first (expired): the message is someone else's now.
      } catch (const std::exception&) {
        ctx.counters->Add(Count::kOtherErrors);
      }
    }
    MaybePause(w.rng, 0.05, 20);
  }
}

}  // namespace

const char* KindName(WorkerKind kind) {
  switch (kind) {
    case WorkerKind::kStreamProducer:
      return "stream-producer";
    case WorkerKind::kStreamConsumer:
      return "stream-consumer";
    case WorkerKind::kUnaryProducer:
      return "unary-producer";
    case WorkerKind::kUnaryConsumer:
      return "unary-consumer";
    case WorkerKind::kRaw:
      return "raw-grpc";
    case WorkerKind::kChildProducer:
      return "child-producer";
    case WorkerKind::kChildConsumer:
      return "child-consumer";
  }
  return "?";
}

bool StopsWithProducers(WorkerKind kind) {
  return kind == WorkerKind::kStreamProducer || kind == WorkerKind::kUnaryProducer ||
         kind == WorkerKind::kRaw || kind == WorkerKind::kChildProducer;
}

void RunWorker(SoakContext& ctx, uint32_t index, WorkerKind kind, uint64_t seed) {
  Worker w{index, Rng(seed), 0};
  switch (kind) {
    case WorkerKind::kStreamProducer:
      StreamProducer(ctx, w);
      break;
    case WorkerKind::kStreamConsumer:
      StreamConsumer(ctx, w);
      break;
    case WorkerKind::kUnaryProducer:
      UnaryProducer(ctx, w);
      break;
    case WorkerKind::kUnaryConsumer:
      UnaryConsumer(ctx, w);
      break;
    case WorkerKind::kRaw:
      RawWorker(ctx, w);
      break;
    case WorkerKind::kChildProducer:
      ChildWorker(ctx, w, true);
      break;
    case WorkerKind::kChildConsumer:
      ChildWorker(ctx, w, false);
      break;
  }
}

bool DrainAll(SoakContext& ctx, milliseconds budget) {
  Client client(ctx.address);
  std::vector<std::unique_ptr<Consumer>> consumers;
  for (const QueueSpec& spec : kQueues) {
    consumers.push_back(
        std::make_unique<Consumer>(client, spec.name, ConsumerOptions{.prefetch = 500}));
  }
  std::vector<std::thread> threads;
  for (size_t q = 0; q < kQueues.size(); ++q) {
    threads.emplace_back([&ctx, &consumers, q] {
      try {
        while (auto m = consumers[q]->next()) {
          Record(ctx, static_cast<int>(q), *m);
          consumers[q]->ack(*m);
        }
      } catch (const std::exception& e) {
        ctx.ledger->Fail(std::string("draining ") + kQueues[q].name + ": " + e.what());
      }
    });
  }
  // Settled: nothing unfinished anywhere, and every dead letter a source
  // counted has arrived in its dead-letter queue (none is in transit).
  auto settled = [&client] {
    std::vector<QueueInfo> infos;
    try {
      infos = client.list_queues();
    } catch (const std::exception&) {
      return false;
    }
    std::vector<const QueueStats*> by_index(kQueues.size(), nullptr);
    for (const QueueInfo& info : infos) {
      const int q = QueueIndex(info.name);
      if (q >= 0) by_index[static_cast<size_t>(q)] = &info.stats;
    }
    for (size_t q = 0; q < kQueues.size(); ++q) {
      if (by_index[q] == nullptr || by_index[q]->unfinished != 0) return false;
      const int dlq = kQueues[q].dead_letter;
      if (dlq >= 0 &&
          by_index[static_cast<size_t>(dlq)]->total_put != by_index[q]->total_dead_lettered) {
        return false;
      }
    }
    return true;
  };
  const auto deadline = Clock::now() + budget;
  int quiet = 0;
  while (quiet < 2 && Clock::now() < deadline) {
    quiet = settled() ? quiet + 1 : 0;
    if (quiet < 2) std::this_thread::sleep_for(milliseconds(20));  // bounded poll
  }
  for (auto& c : consumers) c->cancel();
  for (auto& t : threads) t.join();
  return quiet >= 2;
}

}  // namespace basin::soak
