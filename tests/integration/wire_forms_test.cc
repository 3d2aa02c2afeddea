// The compact wire forms interpreted clients ask for (issue 12), over raw
// gRPC against the real basind: Consume's `columns` and Produce's
// `compact_results` carry what the full forms carry, and fall back to the
// full form whenever the short one could not say it all.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <string>

#include "basin/client.h"
#include "basin/v1/queue.grpc.pb.h"
#include "broker_process.h"

namespace basin {
namespace {

using std::chrono::seconds;
using testing::BrokerProcess;
using testing::WaitFor;

class WireFormsTest : public ::testing::Test {
 protected:
  WireFormsTest()
      : client_(broker_.address()),
        channel_(grpc::CreateChannel(broker_.address(), grpc::InsecureChannelCredentials())),
        stub_(v1::QueueService::NewStub(channel_)) {}

  static std::unique_ptr<grpc::ClientContext> Context() {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + seconds(20));
    return ctx;
  }

  BrokerProcess broker_;
  Client client_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::QueueService::Stub> stub_;
};

TEST_F(WireFormsTest, ConsumeColumnsCarryWhatDeliveriesCarry) {
  Queue q = client_.queue("columns", {});
  const uint64_t first = q.put("a");
  const uint64_t second = q.put("b", Headers{{"k", "v"}});
  const uint64_t third = q.put("");
  auto ctx = Context();
  auto stream = stub_->Consume(ctx.get());
  v1::ConsumeRequest hello;
  hello.set_queue("columns");
  hello.set_columns(true);
  ASSERT_TRUE(stream->Write(hello));
  // The deliveries may come in more than one response: append them, with
  // each response's header keys (indexes in it) moved to indexes in `got`.
  v1::DeliveryColumns got;
  while (got.delivery_tags_size() < 3) {
    v1::ConsumeResponse resp;
    ASSERT_TRUE(stream->Read(&resp));
    EXPECT_EQ(resp.deliveries_size(), 0);
    const auto offset = static_cast<uint32_t>(got.delivery_tags_size());
    const v1::DeliveryColumns& c = resp.columns();
    got.mutable_delivery_tags()->MergeFrom(c.delivery_tags());
    got.mutable_message_ids()->MergeFrom(c.message_ids());
    got.mutable_payloads()->MergeFrom(c.payloads());
    got.mutable_delivery_counts()->MergeFrom(c.delivery_counts());
    for (const auto& [index, headers] : c.headers()) {
      (*got.mutable_headers())[offset + index] = headers;
    }
  }
  ASSERT_EQ(got.message_ids_size(), 3);
  ASSERT_EQ(got.payloads_size(), 3);
  ASSERT_EQ(got.delivery_counts_size(), 3);
  EXPECT_EQ(got.message_ids(0), first);
  EXPECT_EQ(got.message_ids(1), second);
  EXPECT_EQ(got.message_ids(2), third);
  EXPECT_EQ(got.payloads(0), "a");
  EXPECT_EQ(got.payloads(1), "b");
  EXPECT_EQ(got.payloads(2), "");
  EXPECT_EQ(got.delivery_counts(0), 1u);
  EXPECT_EQ(got.delivery_tags(0), 1u);
  EXPECT_EQ(got.delivery_tags(2), 3u);
  ASSERT_EQ(got.headers_size(), 1);  // only the message that has any
  ASSERT_TRUE(got.headers().contains(1));
  EXPECT_EQ(got.headers().at(1).entries().at("k"), "v");
  v1::ConsumeRequest ack;
  ack.set_ack_up_to(got.delivery_tags(2));
  ASSERT_TRUE(stream->Write(ack));
  EXPECT_TRUE(WaitFor([&] { return q.info().stats.unfinished == 0; }));
  stream->WritesDone();
  v1::ConsumeResponse rest;
  while (stream->Read(&rest)) {
  }
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(WireFormsTest, ShortConfirmsOnlyWhenEveryMessageWasEnqueuedNow) {
  client_.queue("confirms", {});
  auto ctx = Context();
  auto stream = stub_->Produce(ctx.get());
  v1::ProduceRequest batch;
  batch.set_queue("confirms");
  batch.set_batch_id(1);
  batch.set_producer_id("wire-forms");
  batch.set_first_sequence(1);
  batch.set_compact_results(true);
  for (const char* p : {"x", "y", "z"}) batch.add_messages()->set_payload(p);
  ASSERT_TRUE(stream->Write(batch));
  v1::ProduceResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_EQ(resp.batch_id(), 1u);
  EXPECT_EQ(resp.results_size(), 0);
  EXPECT_EQ(resp.message_count(), 3u);
  const uint64_t first_id = resp.first_message_id();
  EXPECT_GT(first_id, 0u);

  // The same sequences again: duplicates, so the full form says which.
  batch.set_batch_id(2);
  ASSERT_TRUE(stream->Write(batch));
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_EQ(resp.message_count(), 0u);
  ASSERT_EQ(resp.results_size(), 3);
  EXPECT_TRUE(resp.results(0).duplicate());
  EXPECT_EQ(resp.results(2).message_id(), first_id + 2);

  // A message that fails: the full form carries its error.
  v1::ProduceRequest mixed;
  mixed.set_batch_id(3);
  mixed.set_first_sequence(4);
  mixed.set_compact_results(true);
  mixed.add_messages()->set_payload("ok");
  (*mixed.add_messages()->mutable_headers())["basin-reserved"] = "x";
  ASSERT_TRUE(stream->Write(mixed));
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_EQ(resp.message_count(), 0u);
  ASSERT_EQ(resp.results_size(), 2);
  EXPECT_TRUE(resp.results(0).error_reason().empty());
  EXPECT_EQ(resp.results(1).error_reason(), "RESERVED_HEADER");

  // Without the flag: the full form, as before.
  v1::ProduceRequest plain;
  plain.set_batch_id(4);
  plain.set_first_sequence(6);
  plain.add_messages()->set_payload("plain");
  ASSERT_TRUE(stream->Write(plain));
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_EQ(resp.message_count(), 0u);
  ASSERT_EQ(resp.results_size(), 1);
  stream->WritesDone();
  while (stream->Read(&resp)) {
  }
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(client_.queue("confirms", {}).info().stats.size, 5u);
}

}  // namespace
}  // namespace basin
