// Bad input gets a clear, documented error and loses nothing. Checked both on
// the wire (status code and `basin-error-reason`) and as SDK exceptions.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "basin/client.h"
#include "basin/v1/queue.grpc.pb.h"
#include "broker_process.h"

namespace basin {
namespace {

using grpc::StatusCode;
using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::BrokerProcess;

struct WireResult {
  StatusCode code;
  std::string reason;
  std::string message;
};

class BadInputTest : public ::testing::Test {
 protected:
  BadInputTest()
      : broker_({"--max-message-bytes", "1KiB"}),
        client_(broker_.address()),
        stub_(v1::QueueService::NewStub(
            grpc::CreateChannel(broker_.address(), grpc::InsecureChannelCredentials()))) {}

  template <typename Req, typename Resp>
  WireResult Call(grpc::Status (v1::QueueService::Stub::*method)(grpc::ClientContext*, const Req&,
                                                                 Resp*),
                  const Req& req) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(20));
    Resp resp;
    const grpc::Status s = (stub_.get()->*method)(&ctx, req, &resp);
    std::string reason;
    const auto& md = ctx.GetServerTrailingMetadata();
    if (auto it = md.find("basin-error-reason"); it != md.end()) {
      reason.assign(it->second.data(), it->second.size());
    }
    return {s.error_code(), reason, s.error_message()};
  }
  WireResult Put(const std::string& queue, const std::string& payload,
                 std::optional<std::pair<int64_t, int32_t>> timeout = std::nullopt) {
    v1::PutRequest req;
    req.set_queue(queue);
    req.set_payload(payload);
    if (timeout) {
      req.mutable_timeout()->set_seconds(timeout->first);
      req.mutable_timeout()->set_nanos(timeout->second);
    }
    return Call(&v1::QueueService::Stub::Put, req);
  }

  BrokerProcess broker_;
  Client client_;
  std::unique_ptr<v1::QueueService::Stub> stub_;
};

TEST_F(BadInputTest, QueueNames) {
  v1::CreateQueueRequest req;
  for (const std::string& bad :
       {std::string(""), std::string("a b"), std::string("x/y"), std::string(201, 'n')}) {
    req.set_name(bad);
    const WireResult r = Call(&v1::QueueService::Stub::CreateQueue, req);
    EXPECT_EQ(r.code, StatusCode::INVALID_ARGUMENT) << bad;
    EXPECT_EQ(r.reason, "INVALID_NAME");
    EXPECT_NE(r.message.find("[A-Za-z0-9._-]"), std::string::npos);
  }
  EXPECT_THROW(client_.queue("bad name", {}), InvalidArgument);
  const WireResult missing = Put("nosuch", "x");
  EXPECT_EQ(missing.code, StatusCode::NOT_FOUND);
  EXPECT_EQ(missing.reason, "QUEUE_NOT_FOUND");
  EXPECT_NE(missing.message.find("nosuch"), std::string::npos);
  EXPECT_THROW(client_.queue("nosuch").get_nowait(), NotFound);
}

TEST(QueueLimitTest, NewQueuesBeyondMaxQueuesAreRefused) {
  BrokerProcess broker({"--max-queues", "3"});
  Client client(broker.address());
  client.queue("dead", {});
  client.queue("a", {.dead_letter_queue = "dead"});
  client.queue("b", {});
  try {
    client.queue("c", {});
    FAIL() << "a fourth queue was created";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), static_cast<int>(StatusCode::RESOURCE_EXHAUSTED));
    EXPECT_EQ(e.reason(), "TOO_MANY_QUEUES");
  }
  EXPECT_NO_THROW(client.queue("b", {}));
  client.delete_queue("b");
  EXPECT_NO_THROW(client.queue("c", {}));
}

TEST_F(BadInputTest, CreateWithOtherSettingsIsAlreadyExists) {
  client_.queue("q", {.max_size = 1});
  EXPECT_NO_THROW(client_.queue("q", {.max_size = 1}));
  EXPECT_THROW(client_.queue("q", {.max_size = 2}), AlreadyExists);
  try {
    client_.queue("w", {.dead_letter_queue = "missing"});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.reason(), "DEAD_LETTER_QUEUE_NOT_FOUND");
  }
}

// A schedule the broker cannot keep is refused with a clear error, per
// message in a batch, and takes nothing else with it.
TEST_F(BadInputTest, SchedulesOutOfRangeAreRefused) {
  auto q = client_.queue("q", {});
  v1::PutRequest req;
  req.set_queue("q");
  req.set_payload("x");
  req.mutable_deliver_after()->set_seconds(-1);
  WireResult r = Call(&v1::QueueService::Stub::Put, req);
  EXPECT_EQ(r.code, StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(r.reason, "INVALID_DURATION");
  EXPECT_NE(r.message.find("deliver_after"), std::string::npos) << r.message;
  req.mutable_deliver_after()->set_seconds(31 * 24 * 3600);
  r = Call(&v1::QueueService::Stub::Put, req);
  EXPECT_EQ(r.code, StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(r.reason, "INVALID_ARGUMENT");
  EXPECT_NE(r.message.find("30 days"), std::string::npos) << r.message;
  req.mutable_deliver_at()->set_seconds(253'402'300'800);  // past year 9999
  r = Call(&v1::QueueService::Stub::Put, req);
  EXPECT_EQ(r.code, StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(r.message.find("deliver_at"), std::string::npos) << r.message;
  req.mutable_deliver_at()->set_seconds(4'000'000'000);  // 2096: valid, too far
  r = Call(&v1::QueueService::Stub::Put, req);
  EXPECT_EQ(r.code, StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(r.message.find("30 days"), std::string::npos) << r.message;

  v1::PutRequest batch;
  batch.set_queue("q");
  batch.add_messages()->set_payload("fine");
  v1::PutMessage* bad = batch.add_messages();
  bad->set_payload("bad");
  bad->mutable_deliver_after()->set_nanos(-5);
  v1::PutResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->Put(&ctx, batch, &resp).ok());
  ASSERT_EQ(resp.results_size(), 2);
  EXPECT_EQ(resp.results(0).error_reason(), "");
  EXPECT_EQ(resp.results(1).error_reason(), "INVALID_DURATION");
  EXPECT_EQ(q.qsize(), 1u);
  EXPECT_EQ(q.info().stats.delayed, 0u);
}

TEST_F(BadInputTest, OversizeMessageNamesTheLimitAndLosesNothing) {
  auto q = client_.queue("q", {});
  q.put("before");
  const WireResult r = Put("q", std::string(2000, 'x'));
  EXPECT_EQ(r.code, StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(r.reason, "MESSAGE_TOO_LARGE");
  EXPECT_NE(r.message.find("1024"), std::string::npos) << r.message;
  // Far above the limit too: the broker answers, not the transport.
  EXPECT_THROW(q.put(std::string(60'000, 'x')), MessageTooLarge);
  EXPECT_EQ(q.qsize(), 1u);
  EXPECT_EQ(q.get().payload(), "before");
}

TEST_F(BadInputTest, ReservedHeadersAreRefused) {
  auto q = client_.queue("q", {});
  EXPECT_THROW(q.put("x", {{"basin-original-queue", "forged"}}), InvalidArgument);
  EXPECT_NO_THROW(q.put("x", {{"app-header", "ok"}}));
  EXPECT_EQ(q.get().headers().at("app-header"), "ok");
}

TEST_F(BadInputTest, UnknownAndStaleDeliveryTags) {
  auto q = client_.queue("q", {.visibility_timeout = seconds(1)});
  EXPECT_THROW(q.task_done(std::string("garbage")), InvalidArgument);
  EXPECT_THROW(q.task_done(std::string("1.1")), UnknownDelivery);
  q.put("a");
  Message m = q.get();
  q.task_done(m);
  EXPECT_THROW(q.task_done(m), AlreadyDone);
  q.put("b");
  Message n = q.get(seconds(5), milliseconds(100));
  // The 100 ms lease runs out; the message comes back with count 2.
  Message again = q.get(seconds(20));
  EXPECT_EQ(again.id(), n.id());
  EXPECT_THROW(q.task_done(n), LeaseExpired);
  EXPECT_THROW(n.extend(seconds(5)), LeaseExpired);
  EXPECT_THROW(n.release(), LeaseExpired);
  // A tag from another queue is not this queue's.
  auto other = client_.queue("other", {});
  EXPECT_THROW(other.task_done(again.delivery_tag()), UnknownDelivery);
  q.task_done(again);
  EXPECT_EQ(q.info().stats.unfinished, 0u);
}

TEST_F(BadInputTest, NegativeAndMalformedTimeouts) {
  client_.queue("q", {});
  for (const auto& t : {std::pair<int64_t, int32_t>{-1, 0},
                        {0, -5},
                        {1, -1},
                        {0, 1'000'000'000},
                        {400'000'000'000, 0}}) {
    const WireResult r = Put("q", "x", t);
    EXPECT_EQ(r.code, StatusCode::INVALID_ARGUMENT) << t.first << "s " << t.second << "ns";
    EXPECT_EQ(r.reason, "INVALID_DURATION");
  }
  // Absurd but valid timeouts are capped by --max-wait, not refused.
  const WireResult ok = Put("q", "x", std::pair<int64_t, int32_t>{315'576'000'000, 0});
  EXPECT_EQ(ok.code, StatusCode::OK);
  EXPECT_EQ(client_.queue("q").qsize(), 1u);
}

TEST_F(BadInputTest, DeleteAndCloseErrors) {
  client_.queue("dlq", {});
  client_.queue("work", {.dead_letter_queue = "dlq"});
  try {
    client_.delete_queue("dlq");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.reason(), "DEAD_LETTER_IN_USE");
    EXPECT_EQ(e.code(), static_cast<int>(StatusCode::FAILED_PRECONDITION));
  }
  auto work = client_.queue("work");
  work.close();
  EXPECT_TRUE(work.close());
  try {
    work.put("late");
    FAIL();
  } catch (const Closed& e) {
    EXPECT_EQ(e.code(), static_cast<int>(StatusCode::FAILED_PRECONDITION));
  }
  try {
    work.get();
    FAIL();
  } catch (const Closed& e) {
    EXPECT_EQ(e.code(), static_cast<int>(StatusCode::OUT_OF_RANGE));
  }
  EXPECT_THROW(client_.delete_queue("nosuch"), NotFound);
}

TEST_F(BadInputTest, DeleteEndsWaitersWithQueueDeleted) {
  auto q = client_.queue("doomed", {});
  std::string reason;
  std::thread getter([&] {
    try {
      q.get();
    } catch (const NotFound& e) {
      reason = e.reason();
    }
  });
  ASSERT_TRUE(testing::WaitFor([&] { return q.info().stats.waiting_getters == 1; }));
  client_.delete_queue("doomed");
  getter.join();
  EXPECT_EQ(reason, "QUEUE_DELETED");
}

TEST_F(BadInputTest, DeadLetterHeadersOverTheWire) {
  client_.queue("dlq", {});
  auto q = client_.queue("work", {.max_deliveries = 1, .dead_letter_queue = "dlq"});
  const uint64_t id = q.put("poison");
  q.get().release();
  Message dead = client_.queue("dlq").get(seconds(5));
  EXPECT_EQ(dead.payload(), "poison");
  EXPECT_EQ(dead.headers().at("basin-dead-letter-reason"), "delivery_limit");
  EXPECT_EQ(dead.headers().at("basin-original-queue"), "work");
  EXPECT_EQ(dead.headers().at("basin-original-id"), std::to_string(id));
}

}  // namespace
}  // namespace basin
