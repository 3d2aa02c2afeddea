// basin-echo: the ceiling of Basin's unary path — the same gRPC service
// definition, server setup and sync client stubs, with handlers that do no
// work. basin-bench's unary mode runs put (producers) and get + task_done
// (consumers) per message; `basin-echo load` runs the same three calls with
// empty requests against `basin-echo serve`, in the same thread shape, so the
// ratio of the two rates is what the broker itself costs.
//
// `basin-echo ping` is the floor of the streaming path: one Produce stream
// whose every request (a 100-byte message, sent at a fixed rate) the server
// answers at once, measured from send to answer — the same two trips over the
// same gRPC stack that a message makes from a producer's stream through the
// broker to a consumer's stream, with nothing done in between.
//
//   basin-echo serve [--listen HOST:PORT]       prints "listening on ADDR"
//   basin-echo load --addr HOST:PORT [--producers P] [--consumers C]
//                   [--messages N] [--json]
//   basin-echo ping --addr HOST:PORT [--rate R] [--messages N] [--json]
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "basin/v1/queue.grpc.pb.h"
#include "bench_common.h"

namespace {

namespace v1 = basin::v1;
using Clock = std::chrono::steady_clock;

// Answers each Produce request with its batch_id, one at a time.
class EchoStream final : public grpc::ServerBidiReactor<v1::ProduceRequest, v1::ProduceResponse> {
 public:
  EchoStream() { StartRead(&req_); }
  void OnReadDone(bool ok) override {
    if (!ok) return Finish(grpc::Status::OK);
    resp_.set_batch_id(req_.batch_id());
    StartWrite(&resp_);
  }
  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status::CANCELLED);
    StartRead(&req_);
  }
  void OnDone() override { delete this; }

 private:
  v1::ProduceRequest req_;
  v1::ProduceResponse resp_;
};

// Answers Put, Get and TaskDone at once with empty responses, and echoes
// Produce; every other method is left unimplemented.
class EchoService final : public v1::QueueService::CallbackService {
  grpc::ServerBidiReactor<v1::ProduceRequest, v1::ProduceResponse>* Produce(
      grpc::CallbackServerContext*) override {
    return new EchoStream();
  }
  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* ctx, const v1::PutRequest*,
                                v1::PutResponse*) override {
    return Done(ctx);
  }
  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* ctx, const v1::GetRequest*,
                                v1::GetResponse*) override {
    return Done(ctx);
  }
  grpc::ServerUnaryReactor* TaskDone(grpc::CallbackServerContext* ctx, const v1::TaskDoneRequest*,
                                     v1::TaskDoneResponse*) override {
    return Done(ctx);
  }
  static grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx) {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

int Serve(const std::string& listen) {
  EchoService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  // As in basind: a second server must not share a port by accident.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "basin-echo: cannot listen on %s\n", listen.c_str());
    return 1;
  }
  const std::string host = listen.substr(0, listen.rfind(':'));
  std::printf("listening on %s:%d\n", host.c_str(), port);
  std::fflush(stdout);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  int sig = 0;
  sigwait(&set, &sig);
  server->Shutdown();
  return 0;
}

template <typename Req, typename Resp>
void Call(v1::QueueService::Stub& stub,
          grpc::Status (v1::QueueService::Stub::*method)(grpc::ClientContext*, const Req&, Resp*)) {
  grpc::ClientContext ctx;
  // The SDK gives every call a deadline; so does this, to cost the same.
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  Req req;
  Resp resp;
  const grpc::Status status = (stub.*method)(&ctx, req, &resp);
  if (!status.ok()) {
    std::fprintf(stderr, "basin-echo: %s\n", status.error_message().c_str());
    std::exit(1);
  }
}

int Load(const std::string& addr, int producers, int consumers, long messages, bool json) {
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  auto run = [&](int role_threads, int index, bool consumer) {
    auto stub =
        v1::QueueService::NewStub(grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()));
    const long n = messages / role_threads + (index < messages % role_threads ? 1 : 0);
    for (long i = 0; i < n; ++i) {
      if (consumer) {
        Call(*stub, &v1::QueueService::Stub::Get);
        Call(*stub, &v1::QueueService::Stub::TaskDone);
      } else {
        Call(*stub, &v1::QueueService::Stub::Put);
      }
    }
  };
  for (int p = 0; p < producers; ++p) threads.emplace_back(run, producers, p, false);
  for (int c = 0; c < consumers; ++c) threads.emplace_back(run, consumers, c, true);
  for (auto& t : threads) t.join();
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  const double rate = static_cast<double>(messages) / secs;
  const double calls = rate * 3;
  if (json) {
    std::printf(
        "{\"mode\":\"echo\",\"producers\":%d,\"consumers\":%d,\"messages\":%ld,"
        "\"seconds\":%.3f,\"received_per_sec\":%.0f,\"calls_per_sec\":%.0f,\"cpu_s\":%.3f}\n",
        producers, consumers, messages, secs, rate, calls, bench::CpuSeconds());
  } else {
    std::printf(
        "echo: %d x %d, %ld messages (3 empty calls each) in %.2f s: %.0f msg/s, %.0f "
        "calls/s\n",
        producers, consumers, messages, secs, rate, calls);
  }
  return 0;
}

// Send-to-answer times of requests paced at `rate` over one stream.
int Ping(const std::string& addr, long rate, long messages, bool json) {
  auto stub =
      v1::QueueService::NewStub(grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  auto stream = stub->Produce(&ctx);
  std::vector<int64_t> samples;
  samples.reserve(static_cast<size_t>(messages));
  std::thread reader([&] {
    v1::ProduceResponse resp;
    while (static_cast<long>(samples.size()) < messages && stream->Read(&resp)) {
      samples.push_back(bench::NowNs() - static_cast<int64_t>(resp.batch_id()));
    }
  });
  const auto start = Clock::now();
  v1::ProduceRequest req;
  req.add_messages()->set_payload(std::string(100, 'x'));
  for (long i = 0; i < messages; ++i) {
    bench::Pace(start, i, static_cast<double>(rate));
    req.set_batch_id(static_cast<uint64_t>(bench::NowNs()));
    if (!stream->Write(req)) break;
  }
  reader.join();
  stream->WritesDone();
  stream->Finish();
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  bench::Latencies lat;
  lat.Add(samples);
  const bench::Percentiles p = lat.All();
  if (json) {
    std::printf(
        "{\"mode\":\"ping\",\"messages\":%zu,\"seconds\":%.3f,\"p50_us\":%.1f,"
        "\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f}\n",
        samples.size(), secs, p.p50, p.p90, p.p99, p.p999);
  } else {
    std::printf("ping: %zu round trips at %ld/s: p50 %.1f µs, p99 %.1f µs, p99.9 %.1f µs\n",
                samples.size(), rate, p.p50, p.p99, p.p999);
  }
  return 0;
}

[[noreturn]] void Usage() {
  std::fprintf(stderr,
               "usage: basin-echo serve [--listen HOST:PORT]\n"
               "       basin-echo load --addr HOST:PORT [--producers P] [--consumers C] "
               "[--messages N] [--json]\n"
               "       basin-echo ping --addr HOST:PORT [--rate R] [--messages N] [--json]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) Usage();
  const std::string command = argv[1];
  std::string listen = "127.0.0.1:0", addr;
  int producers = 1, consumers = 1;
  long rate = 5'000;
  long messages = 20'000;
  bool json = false;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Usage();
      return argv[++i];
    };
    if (a == "--listen") {
      listen = value();
    } else if (a == "--addr") {
      addr = value();
    } else if (a == "--producers") {
      producers = std::stoi(value());
    } else if (a == "--consumers") {
      consumers = std::stoi(value());
    } else if (a == "--messages") {
      messages = std::stol(value());
    } else if (a == "--rate") {
      rate = std::stol(value());
    } else if (a == "--json") {
      json = true;
    } else {
      Usage();
    }
  }
  if (command == "serve") return Serve(listen);
  // The client side polls as basin-bench's does (basin::use_poll_poller(), the
  // same rule), so the floor and Basin's figures share one gRPC stack; the
  // server keeps epoll1, like basind.
  setenv("GRPC_POLL_STRATEGY", "poll", 0);
  if (command == "load" && !addr.empty() && producers > 0 && consumers > 0 && messages > 0) {
    return Load(addr, producers, consumers, messages, json);
  }
  if (command == "ping" && !addr.empty() && rate > 0 && messages > 0) {
    return Ping(addr, rate, messages, json);
  }
  Usage();
}
