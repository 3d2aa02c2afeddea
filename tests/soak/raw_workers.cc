// The raw gRPC workers: Put, Get, Produce and Consume on their own channel,
// without the SDK, cancelled (TryCancel) at a random moment or cut by a short
// deadline — what a client that vanishes mid-call does to the broker.
#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "basin/v1/queue.grpc.pb.h"
#include "queues.h"
#include "worker_support.h"

namespace basin::soak {
namespace {

using std::chrono::milliseconds;

// The end of an asynchronous gRPC call.
class Completion {
 public:
  void Done(grpc::Status s) {
    std::lock_guard lock(mu_);
    status_ = std::move(s);
    done_ = true;
    cv_.notify_all();
  }
  // Every call has a deadline, so this returns.
  grpc::Status Wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return done_; });
    return status_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  grpc::Status status_;
};

std::string Reason(const grpc::ClientContext& c) {
  const auto& trailers = c.GetServerTrailingMetadata();
  const auto it = trailers.find("basin-error-reason");
  return it == trailers.end() ? std::string() : std::string(it->second.data(), it->second.size());
}

// Reasons after which the broker holds nothing of a put.
bool PutRefused(const std::string& reason) {
  return reason == "QUEUE_FULL" || reason == "BROKER_MEMORY" || reason == "TOO_MANY_WAITERS" ||
         reason == "MESSAGE_TOO_LARGE" || reason == "INVALID_ARGUMENT";
}

void SetDuration(google::protobuf::Duration* d, milliseconds ms) {
  d->set_seconds(ms.count() / 1000);
  d->set_nanos(static_cast<int32_t>(ms.count() % 1000) * 1'000'000);
}

bool RecordProto(SoakContext& ctx, int q, const v1::Message& m) {
  if (auto p = DeadLetterProblem(q, FindHeader(m.headers(), kOriginalQueueHeader)))
    ctx.ledger->Fail(*p);
  const std::string* id = FindHeader(m.headers(), kIdHeader);
  return ctx.ledger->Received(id == nullptr ? 0 : ParseId(*id), q, m.delivery_count(), m.payload());
}

std::shared_ptr<grpc::Channel> RawChannel(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // its own connection
  args.SetMaxReceiveMessageSize(-1);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

// Waits for an asynchronous call, cancelling it at a random moment (or not).
grpc::Status AwaitWithRandomCancel(SoakContext& ctx, Worker& w, grpc::ClientContext& c,
                                   Completion& done) {
  if (w.rng.Chance(0.7)) {
    std::this_thread::sleep_for(w.rng.Ms(0, 30));  // the random moment
    c.TryCancel();
    ctx.counters->Add(Count::kRawCancels);
  }
  return done.Wait();
}

void RawPut(SoakContext& ctx, Worker& w, v1::QueueService::Stub& stub, uint32_t inc,
            uint32_t* seq) {
  const int q = ProducibleQueue(w.rng);
  const uint64_t id = MakeId(w.index, inc, (*seq)++);
  ctx.ledger->Sent(id, q);
  v1::PutRequest req;
  req.set_queue(kQueues[static_cast<size_t>(q)].name);
  req.set_payload(MakePayload(id));
  (*req.mutable_headers())[kIdHeader] = std::to_string(id);
  SetDuration(req.mutable_timeout(), w.rng.Ms(0, 1000));
  grpc::ClientContext c;
  c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(15));
  v1::PutResponse resp;
  Completion done;
  stub.async()->Put(&c, &req, &resp, [&done](grpc::Status s) { done.Done(std::move(s)); });
  const grpc::Status s = AwaitWithRandomCancel(ctx, w, c, done);
  if (s.ok()) {
    ctx.ledger->Confirmed(id, q);
  } else if (PutRefused(Reason(c))) {
    ctx.ledger->Refused(id, q);
  } else {
    ctx.counters->Add(Count::kUnknownOutcome);
  }
}

void RawGet(SoakContext& ctx, Worker& w, v1::QueueService::Stub& stub) {
  const int q = AnyQueue(w.rng);
  const std::string name = kQueues[static_cast<size_t>(q)].name;
  v1::GetRequest req;
  req.set_queue(name);
  SetDuration(req.mutable_timeout(), w.rng.Ms(0, 1000));
  SetDuration(req.mutable_visibility_timeout(), w.rng.Ms(300, 3000));
  if (w.rng.Chance(0.3)) req.set_max_messages(static_cast<uint32_t>(w.rng.Uniform(2, 20)));
  grpc::ClientContext c;
  c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(15));
  v1::GetResponse resp;
  Completion done;
  stub.async()->Get(&c, &req, &resp, [&done](grpc::Status s) { done.Done(std::move(s)); });
  if (!AwaitWithRandomCancel(ctx, w, c, done).ok()) return;
  std::vector<std::pair<const v1::Message*, std::string>> got;
  if (req.max_messages() > 1) {
    for (const v1::Delivery& d : resp.deliveries())
      got.emplace_back(&d.message(), d.delivery_tag());
  } else {
    got.emplace_back(&resp.message(), resp.delivery_tag());
  }
  for (const auto& [m, tag] : got) {
    RecordProto(ctx, q, *m);
    const uint64_t r = w.rng.Uniform(0, 99);
    grpc::ClientContext c2;
    c2.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(15));
    if (r < 50) {
      v1::TaskDoneRequest done_req;
      done_req.set_queue(name);
      done_req.set_delivery_tag(tag);
      v1::TaskDoneResponse done_resp;
      if (stub.TaskDone(&c2, done_req, &done_resp).ok()) {
        const std::string* id = FindHeader(m->headers(), kIdHeader);
        ctx.ledger->Finished(id == nullptr ? 0 : ParseId(*id), q, m->delivery_count());
        ctx.counters->Add(Count::kAcked);
      }
    } else if (r < 75) {
      v1::ReleaseRequest rel;
      rel.set_queue(name);
      rel.set_delivery_tag(tag);
      v1::ReleaseResponse rel_resp;
      stub.Release(&c2, rel, &rel_resp);
      ctx.counters->Add(Count::kReleased);
    } else {
      ctx.counters->Add(Count::kLeftToExpire);
    }
  }
}

void RawProduce(SoakContext& ctx, Worker& w, v1::QueueService::Stub& stub) {
  const int q = ProducibleQueue(w.rng);
  const uint32_t inc = w.NextIncarnation();
  grpc::ClientContext c;
  c.set_deadline(std::chrono::system_clock::now() + w.rng.Ms(300, 3000));
  auto stream = stub.Produce(&c);
  std::vector<std::vector<uint64_t>> batches;
  std::vector<bool> resolved;
  uint32_t seq = 0;
  const uint64_t n_batches = w.rng.Uniform(1, 3);
  for (uint64_t b = 0; b < n_batches; ++b) {
    v1::ProduceRequest req;
    if (b == 0) {
      req.set_queue(kQueues[static_cast<size_t>(q)].name);
      req.set_producer_id("raw-" + std::to_string(w.rng.Next()));
    }
    req.set_batch_id(b + 1);
    req.set_first_sequence(seq + 1);
    std::vector<uint64_t> ids;
    const uint64_t n = w.rng.Uniform(1, 15);
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t id = MakeId(w.index, inc, seq++);
      ctx.ledger->Sent(id, q);
      v1::PutMessage* pm = req.add_messages();
      pm->set_payload(MakePayload(id));
      (*pm->mutable_headers())[kIdHeader] = std::to_string(id);
      ids.push_back(id);
    }
    batches.push_back(std::move(ids));
    resolved.push_back(false);
    if (!stream->Write(req)) break;
  }
  auto read_one = [&] {
    v1::ProduceResponse resp;
    if (!stream->Read(&resp)) return false;
    const uint64_t b = resp.batch_id() - 1;
    if (b >= batches.size() || resolved[b] ||
        static_cast<size_t>(resp.results_size()) != batches[b].size()) {
      ctx.ledger->Fail("Produce answered batch " + std::to_string(resp.batch_id()) + " with " +
                       std::to_string(resp.results_size()) + " results unexpectedly");
      return false;
    }
    resolved[b] = true;
    for (size_t i = 0; i < batches[b].size(); ++i) {
      if (resp.results(static_cast<int>(i)).error_reason().empty()) {
        ctx.ledger->Confirmed(batches[b][i], q);
      } else {
        ctx.ledger->Refused(batches[b][i], q);
      }
    }
    return true;
  };
  const uint64_t reads = w.rng.Uniform(0, batches.size());
  for (uint64_t r = 0; r < reads && read_one(); ++r) {
  }
  if (w.rng.Chance(0.5)) {
    c.TryCancel();  // the rest of the batches in flight: enqueued or not
    ctx.counters->Add(Count::kStreamCancels);
  } else {
    stream->WritesDone();
    while (read_one()) {
    }
  }
  stream->Finish();
  for (size_t b = 0; b < batches.size(); ++b) {
    if (!resolved[b]) ctx.counters->Add(Count::kUnknownOutcome, batches[b].size());
  }
}

void RawConsume(SoakContext& ctx, Worker& w, v1::QueueService::Stub& stub) {
  const int q = AnyQueue(w.rng);
  grpc::ClientContext c;
  c.set_deadline(std::chrono::system_clock::now() + w.rng.Ms(300, 2000));
  auto stream = stub.Consume(&c);
  v1::ConsumeRequest start;
  start.set_queue(kQueues[static_cast<size_t>(q)].name);
  start.set_prefetch(static_cast<uint32_t>(w.rng.Uniform(1, 64)));
  if (w.rng.Chance(0.3)) SetDuration(start.mutable_ack_timeout(), w.rng.Ms(200, 1500));
  const uint64_t want = w.rng.Uniform(1, 200);
  uint64_t got = 0;
  v1::ConsumeResponse resp;
  if (stream->Write(start)) {
    while (got < want && stream->Read(&resp)) {
      v1::ConsumeRequest answer;
      for (const v1::StreamDelivery& d : resp.deliveries()) {
        RecordProto(ctx, q, d.message());
        ++got;
        const uint64_t r = w.rng.Uniform(0, 99);
        if (r < 60) {
          answer.add_acks(d.delivery_tag());
        } else if (r < 75) {
          answer.add_releases(d.delivery_tag());
        }
      }
      if (answer.acks_size() + answer.releases_size() > 0 && !stream->Write(answer)) break;
    }
  }
  c.TryCancel();  // what it holds goes back; acks in flight may or may not count
  ctx.counters->Add(Count::kStreamCancels);
  stream->Finish();
}

}  // namespace

void RawWorker(SoakContext& ctx, Worker& w) {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::QueueService::Stub> stub;
  uint32_t inc = 0;
  uint32_t seq = 0;
  while (!ctx.stop_producing) {
    if (!channel || w.rng.Chance(0.05)) {
      if (channel) ctx.counters->Add(Count::kClientDrops);
      stub.reset();
      channel = RawChannel(ctx.address);
      stub = v1::QueueService::NewStub(channel);
      inc = w.NextIncarnation();
      seq = 0;
    }
    const uint64_t r = w.rng.Uniform(0, 99);
    if (r < 30) {
      RawPut(ctx, w, *stub, inc, &seq);
    } else if (r < 60) {
      RawGet(ctx, w, *stub);
    } else if (r < 80) {
      RawProduce(ctx, w, *stub);
    } else {
      RawConsume(ctx, w, *stub);
    }
    MaybePause(w.rng, 0.05, 20);
  }
}

}  // namespace basin::soak
