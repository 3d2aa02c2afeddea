// What one hostile or careless client did to basind (issue 11), against the
// real binary over raw gRPC: each test checks the status it got and that the
// broker went on serving and stopped cleanly on SIGTERM. Each failed before
// its fix (the broker hung, grew without bound or never exited).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <thread>

#include "basin/client.h"
#include "basin/v1/queue.grpc.pb.h"
#include "broker_process.h"

namespace basin {
namespace {

using grpc::StatusCode;
using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::BrokerProcess;
using testing::WaitFor;

// Resident memory of a process, from /proc, in bytes.
uint64_t Rss(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

class HostileTest : public ::testing::Test {
 protected:
  HostileTest()
      : client_(broker_.address()),
        channel_(grpc::CreateChannel(broker_.address(), grpc::InsecureChannelCredentials())),
        stub_(v1::QueueService::NewStub(channel_)) {}

  // The broker still answers a quick call, and exits on SIGTERM in time.
  void ExpectServingThenStops() {
    EXPECT_NO_THROW(client_.queue("still-serving", {}).put("x"));
    const auto status = broker_.Stop(seconds(20));
    ASSERT_TRUE(status.has_value()) << "basind did not stop on SIGTERM";
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
  }

  static std::unique_ptr<grpc::ClientContext> Context(seconds deadline = seconds(20)) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + deadline);
    return ctx;
  }

  BrokerProcess broker_;
  Client client_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::QueueService::Stub> stub_;
};

TEST_F(HostileTest, AProducerSequenceJumpIsCheap) {
  // Once: the broker padded the gap one entry at a time under the queue's
  // lock, stopped answering and grew ~200 MB a second.
  client_.queue("jump", {});
  auto ctx = Context();
  auto stream = stub_->Produce(ctx.get());
  v1::ProduceRequest req;
  req.set_queue("jump");
  req.set_producer_id("p");
  req.set_first_sequence(1);
  req.add_messages()->set_payload("a");
  ASSERT_TRUE(stream->Write(req));
  v1::ProduceResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  req.set_first_sequence(uint64_t{1} << 62);
  ASSERT_TRUE(stream->Write(req));
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_EQ(resp.results(0).message_id(), 2u);
  // A batch that would run past 2^63 is refused.
  req.set_first_sequence(UINT64_MAX);
  ASSERT_TRUE(stream->Write(req));
  stream->WritesDone();
  EXPECT_FALSE(stream->Read(&resp));
  const grpc::Status s = stream->Finish();
  EXPECT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(client_.queue("jump", {}).info().stats.total_put, 2u);
  ExpectServingThenStops();
}

TEST_F(HostileTest, HugeDedupIdsAreRefusedAndKeptOnesAreBounded) {
  // Once: 200 puts with 1 MB dedup ids left the broker ~400 MB larger with an
  // empty queue, outside --max-memory.
  auto q = client_.queue("dedup", {});
  const uint64_t before = Rss(broker_.pid());
  for (int i = 0; i < 200; ++i) {
    v1::PutRequest req;
    req.set_queue("dedup");
    req.set_dedup_id(std::string(1 << 20, static_cast<char>('a' + i % 26)) + std::to_string(i));
    v1::PutResponse resp;
    auto ctx = Context();
    const grpc::Status s = stub_->Put(ctx.get(), req, &resp);
    ASSERT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT) << s.error_message();
  }
  EXPECT_EQ(q.info().stats.total_put, 0u);
  // A sanitizer's allocator keeps freed blocks in quarantine: RSS says
  // nothing there.
  if (!BASIN_SANITIZED) {
    EXPECT_LT(Rss(broker_.pid()), before + (64u << 20));
  }
  ExpectServingThenStops();
}

TEST_F(HostileTest, AGetForBillionsIsRefused) {
  auto q = client_.queue("many", {});
  for (int i = 0; i < 3; ++i) q.put("m");
  v1::GetRequest req;
  req.set_queue("many");
  req.set_max_messages(4'000'000'000u);
  req.set_max_bytes(UINT64_MAX);
  v1::GetResponse resp;
  auto ctx = Context();
  EXPECT_EQ(stub_->Get(ctx.get(), req, &resp).error_code(), StatusCode::INVALID_ARGUMENT);
  req.set_max_messages(1000);
  req.set_max_bytes(0);
  auto ok_ctx = Context();
  ASSERT_TRUE(stub_->Get(ok_ctx.get(), req, &resp).ok());
  EXPECT_EQ(resp.deliveries_size(), 3);
  ExpectServingThenStops();
}

TEST_F(HostileTest, ConsumeAckListsAreBounded) {
  client_.queue("acks", {}).put("m");
  auto ctx = Context();
  auto stream = stub_->Consume(ctx.get());
  v1::ConsumeRequest req;
  req.set_queue("acks");
  ASSERT_TRUE(stream->Write(req));
  v1::ConsumeResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  v1::ConsumeRequest acks;
  for (int i = 0; i < 10'001; ++i) acks.add_acks(static_cast<uint64_t>(i) + 100);
  ASSERT_TRUE(stream->Write(acks));
  while (stream->Read(&resp)) {
  }
  EXPECT_EQ(stream->Finish().error_code(), StatusCode::INVALID_ARGUMENT);
  // The message it held went back to the queue.
  EXPECT_TRUE(WaitFor([&] { return client_.queue("acks", {}).info().stats.size == 1; }));
  ExpectServingThenStops();
}

TEST_F(HostileTest, AProducerThatVanishesWhileItsBatchWaitsLeavesNothingStuck) {
  // Once: the stream's write failed while a batch waited for room, and the
  // broker cancelled that batch under the call's own lock, whose answer then
  // took the same lock: a gRPC thread wedged and SIGTERM never finished.
  constexpr int kBatch = 10'000;
  constexpr int kBatches = 40;
  // A client that announces a small receive window and never reads: the
  // broker's confirm writes stay pending.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto stub = v1::QueueService::NewStub(
      grpc::CreateCustomChannel(broker_.address(), grpc::InsecureChannelCredentials(), args));
  for (int round = 0; round < 3; ++round) {
    const std::string name = "wedge-" + std::to_string(round);
    auto q = client_.queue(name, {.max_size = kBatch * (kBatches - 1)});
    auto ctx = Context();
    auto stream = stub->Produce(ctx.get());
    v1::ProduceRequest req;
    req.set_queue(name);
    for (int i = 0; i < kBatch; ++i) req.add_messages();
    // Never read a confirm: the broker's writes back up behind flow control
    // while the last batch waits for room.
    for (int b = 0; b < kBatches; ++b) {
      req.set_batch_id(static_cast<uint64_t>(b) + 1);
      if (!stream->Write(req)) break;
    }
    ASSERT_TRUE(WaitFor([&] { return q.info().stats.waiting_putters == 1; }))
        << "the last batch never waited";
    ctx->TryCancel();
    (void)stream->Finish();
    ASSERT_TRUE(WaitFor([&] { return q.info().stats.waiting_putters == 0; }))
        << "the cancelled batch still waits";
  }
  ExpectServingThenStops();
}

}  // namespace
}  // namespace basin
