// PublishStream against the real broker: basin::Publisher's batches and
// confirms, per-message failures, the raw stream's order, back-pressure,
// refusals that end it, and shutdown.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "basin/client.h"
#include "basin/publisher.h"
#include "basin/v1/topic.grpc.pb.h"
#include "broker_process.h"
#include "temp_dir.h"

namespace basin {
namespace {

using std::chrono::seconds;
using testing::BrokerProcess;
using testing::TempDir;

// Reads `n` messages; their payloads, in arrival order.
std::vector<std::string> Take(Subscription& sub, size_t n) {
  std::vector<std::string> out;
  while (out.size() < n) {
    auto m = sub.next();
    if (!m) break;
    out.push_back(m->topic + "/" + m->payload);
  }
  return out;
}

class RawPublishStream {
 public:
  explicit RawPublishStream(const std::string& address)
      : stub_(v1::TopicService::NewStub(
            grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))),
        stream_(stub_->PublishStream(&ctx_)) {}

  bool Send(uint64_t batch_id, const std::string& topic, int messages) {
    v1::PublishStreamRequest req;
    req.set_batch_id(batch_id);
    for (int i = 0; i < messages; ++i) {
      v1::PublishRequest* m = req.add_messages();
      m->set_topic(topic);
      m->set_payload(std::to_string(i));
    }
    return stream_->Write(req);
  }
  std::optional<v1::PublishStreamResponse> Read() {
    v1::PublishStreamResponse resp;
    if (!stream_->Read(&resp)) return std::nullopt;
    return resp;
  }
  grpc::Status Finish() {
    stream_->WritesDone();
    while (Read()) {
    }
    return stream_->Finish();
  }
  std::string Reason() const {
    auto it = ctx_.GetServerTrailingMetadata().find("basin-error-reason");
    return it == ctx_.GetServerTrailingMetadata().end()
               ? ""
               : std::string(it->second.data(), it->second.size());
  }
  grpc::ClientContext& ctx() { return ctx_; }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<v1::TopicService::Stub> stub_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::PublishStreamRequest, v1::PublishStreamResponse>>
      stream_;
};

TEST(PublishStreamTest, PublisherReachesEverySubscriberInOrder) {
  constexpr int kEach = 5'000;
  BrokerProcess broker;
  Client client(broker.address());
  auto both = client.subscribe({"ps.a", "ps.b"});
  auto only_a = client.subscribe({"ps.a"});
  {
    Publisher publisher(client, {.max_batch_messages = 300});
    for (int i = 0; i < kEach; ++i) {
      publisher.publish("ps.a", std::to_string(i));
      publisher.publish("ps.b", std::to_string(i));
    }
    const PublishSummary s = publisher.flush();
    EXPECT_EQ(s.confirmed, 2u * kEach);
    EXPECT_EQ(s.receivers, 3u * kEach);  // ps.a reaches both, ps.b one
    EXPECT_EQ(s.queues, 0u);
    EXPECT_EQ(s.failed, 0u);
    EXPECT_TRUE(s.failures.empty());
    EXPECT_EQ(publisher.flush().confirmed, 0u);  // a summary is handed out once
  }
  const std::vector<std::string> got_both = Take(both, 2 * kEach);
  const std::vector<std::string> got_a = Take(only_a, kEach);
  ASSERT_EQ(got_both.size(), 2u * kEach);
  ASSERT_EQ(got_a.size(), static_cast<size_t>(kEach));
  for (int i = 0; i < kEach; ++i) {
    EXPECT_EQ(got_both[2 * i], "ps.a/" + std::to_string(i));
    EXPECT_EQ(got_both[2 * i + 1], "ps.b/" + std::to_string(i));
    EXPECT_EQ(got_a[i], "ps.a/" + std::to_string(i));
  }
}

TEST(PublishStreamTest, InvalidMessagesAreListedAndTheRestGo) {
  BrokerProcess broker({"--max-message-bytes", "1KiB"});
  Client client(broker.address());
  auto sub = client.subscribe({"ok"});
  Publisher publisher(client);
  publisher.publish("ok", "first");
  publisher.publish("not a topic", "x");
  publisher.publish("ok", std::string(2048, 'x'));
  publisher.publish("ok", "last", {{"trace", "7"}});
  const PublishSummary s = publisher.flush();
  EXPECT_EQ(s.confirmed, 4u);
  EXPECT_EQ(s.receivers, 2u);
  EXPECT_EQ(s.failed, 2u);
  ASSERT_EQ(s.failures.size(), 2u);
  EXPECT_EQ(s.failures[0].topic, "not a topic");
  EXPECT_EQ(s.failures[0].error_reason, "INVALID_TOPIC");
  EXPECT_FALSE(s.failures[0].error_message.empty());
  EXPECT_EQ(s.failures[1].topic, "ok");
  EXPECT_EQ(s.failures[1].error_reason, "MESSAGE_TOO_LARGE");
  EXPECT_EQ(Take(sub, 2), (std::vector<std::string>{"ok/first", "ok/last"}));
}

TEST(PublishStreamTest, BoundQueueThatRefusesIsNamed) {
  BrokerProcess broker;
  Client client(broker.address());
  auto q = client.queue("one-slot", QueueOptions{.max_size = 1});
  client.bind_queue("fill.#", "one-slot");
  Publisher publisher(client);
  for (int i = 0; i < 3; ++i) publisher.publish("fill.up", std::to_string(i));
  const PublishSummary s = publisher.flush();
  EXPECT_EQ(s.confirmed, 3u);
  EXPECT_EQ(s.queues, 1u);
  EXPECT_EQ(s.failed, 0u);  // published: only the queue's copy was refused
  ASSERT_EQ(s.failures.size(), 2u);
  for (const PublishFailure& f : s.failures) {
    EXPECT_TRUE(f.error_reason.empty());
    EXPECT_EQ(f.undelivered_queues, std::vector<std::string>{"one-slot"});
  }
  EXPECT_EQ(q.qsize(), 1u);
}

// A refused copy per message of a 10,000-message batch: the confirm lists
// about 64 KiB of them and counts the rest.
TEST(PublishStreamTest, ConfirmListsABoundedShareOfFailures) {
  BrokerProcess broker;
  Client client(broker.address());
  const std::string queue(200, 'q');
  client.queue(queue, QueueOptions{.max_size = 1});
  client.bind_queue("many", queue);
  RawPublishStream stream(broker.address());
  ASSERT_TRUE(stream.Send(1, "many", 10'000));
  auto resp = stream.Read();
  ASSERT_TRUE(resp.has_value());
  EXPECT_EQ(resp->message_count(), 10'000u);
  EXPECT_EQ(resp->queues(), 1u);
  EXPECT_EQ(resp->failed(), 0u);
  EXPECT_GT(resp->failures_size(), 100);
  EXPECT_EQ(static_cast<uint32_t>(resp->failures_size()) + resp->failures_omitted(), 9'999u);
  EXPECT_LT(resp->ByteSizeLong(), size_t{80} << 10);
  for (const v1::PublishFailure& f : resp->failures()) {
    ASSERT_EQ(f.undelivered_queues_size(), 1);
    EXPECT_GE(f.index(), 1u);
  }
  EXPECT_TRUE(stream.Finish().ok());
}

// Bodies of 1 KiB and more go to each subscriber as references to the one
// shared copy; what arrives is the same as for small ones.
TEST(PublishStreamTest, LargeBodiesReachEverySubscriberIntact) {
  BrokerProcess broker;
  Client client(broker.address());
  SubscribeOptions by_pattern;
  by_pattern.patterns = {"big.*"};
  auto exact = client.subscribe({"big.one"});
  auto pattern = client.subscribe({}, by_pattern);
  const std::vector<std::string> bodies = {std::string(1023, 'a'), std::string(1024, 'b'),
                                           std::string(300'000, 'c'), "", "small"};
  Publisher publisher(client);
  for (const std::string& body : bodies)
    publisher.publish("big.one", body, {{"h", body.substr(0, 3)}});
  EXPECT_EQ(publisher.flush().receivers, 2u * bodies.size());
  for (Subscription* sub : {&exact, &pattern}) {
    for (const std::string& body : bodies) {
      auto m = sub->next();
      ASSERT_TRUE(m.has_value());
      EXPECT_EQ(m->payload, body);
      EXPECT_EQ(m->topic, "big.one");
      EXPECT_EQ(m->pattern, sub == &pattern ? "big.*" : "");
      EXPECT_EQ(m->headers, (Headers{{"h", body.substr(0, 3)}}));
    }
  }
}

// Batches written far ahead of the confirms, each waiting for its copy into a
// durable bound queue to reach the disk (fsync always): confirms come back
// from the disk's thread in any grouping, and go out in batch order; past 64
// unconfirmed batches the broker stops reading until they do.
TEST(PublishStreamTest, DurableCopiesAreConfirmedInBatchOrder) {
  constexpr uint64_t kBatches = 2'000;
  TempDir dir;
  BrokerProcess broker({"--data-dir", dir.Sub("data"), "--fsync", "always"});
  Client client(broker.address());
  auto q = client.queue("kept", QueueOptions{.durable = true});
  client.bind_queue("window", "kept");
  RawPublishStream stream(broker.address());
  std::thread writer([&] {
    for (uint64_t b = 1; b <= kBatches; ++b) {
      if (!stream.Send(b, "window", 5)) break;
    }
  });
  for (uint64_t b = 1; b <= kBatches; ++b) {
    auto resp = stream.Read();
    ASSERT_TRUE(resp.has_value());
    ASSERT_EQ(resp->batch_id(), b);
    ASSERT_EQ(resp->queues(), 5u);
    ASSERT_EQ(resp->failures_size(), 0);
  }
  writer.join();
  EXPECT_TRUE(stream.Finish().ok());
  EXPECT_EQ(q.qsize(), 5 * kBatches);
}

TEST(PublishStreamTest, OversizedBatchEndsTheStreamAfterEarlierConfirms) {
  BrokerProcess broker;
  RawPublishStream stream(broker.address());
  ASSERT_TRUE(stream.Send(1, "t", 3));
  auto first = stream.Read();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->batch_id(), 1u);
  stream.Send(2, "t", 10'001);
  const grpc::Status status = stream.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(stream.Reason(), "INVALID_ARGUMENT");
  EXPECT_NE(status.error_message().find("10000"), std::string::npos);
  EXPECT_EQ(Client(broker.address()).publish("t", "still serving").receivers, 0u);
}

TEST(PublishStreamTest, EmptyBatchIsConfirmed) {
  BrokerProcess broker;
  RawPublishStream stream(broker.address());
  ASSERT_TRUE(stream.Send(42, "t", 0));
  auto resp = stream.Read();
  ASSERT_TRUE(resp.has_value());
  EXPECT_EQ(resp->batch_id(), 42u);
  EXPECT_EQ(resp->message_count(), 0u);
  EXPECT_TRUE(stream.Finish().ok());
}

TEST(PublishStreamTest, VanishedPublisherLeavesTheBrokerServing) {
  BrokerProcess broker;
  {
    RawPublishStream stream(broker.address());
    for (uint64_t b = 1; b <= 100; ++b) stream.Send(b, "gone", 50);
    stream.ctx().TryCancel();
  }
  Client client(broker.address());
  auto sub = client.subscribe({"after"});
  Publisher publisher(client);
  publisher.publish("after", "x");
  EXPECT_EQ(publisher.flush().receivers, 1u);
}

// Destroyed at once after a publish: the destructor returns (its receiving
// thread must not open a stream after the destructor cancelled the last one).
TEST(PublishStreamTest, PublisherDestroyedWithoutWaitingReturns) {
  BrokerProcess broker;
  Client client(broker.address());
  for (int i = 0; i < 20; ++i) {
    Publisher publisher(client, {.close_timeout = std::chrono::milliseconds(0)});
    publisher.publish("t", "x");
  }
  Publisher publisher(client);
  publisher.publish("t", "y");
  EXPECT_EQ(publisher.flush().confirmed, 1u);
}

TEST(PublishStreamTest, ShutdownEndsTheStreamWithUnavailable) {
  BrokerProcess broker;
  Client client(broker.address());
  Publisher publisher(client);
  publisher.publish("t", "before");
  EXPECT_EQ(publisher.flush().confirmed, 1u);
  RawPublishStream stream(broker.address());
  ASSERT_TRUE(stream.Send(1, "t", 1));
  ASSERT_TRUE(stream.Read().has_value());
  const auto exit = broker.Stop(seconds(5));
  ASSERT_TRUE(exit.has_value());
  const grpc::Status status = stream.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  // The Publisher's stream ended too: what it publishes now is lost, and
  // flush says so.
  publisher.publish("t", "after");
  EXPECT_THROW(publisher.flush(), Unavailable);
}

}  // namespace
}  // namespace basin
