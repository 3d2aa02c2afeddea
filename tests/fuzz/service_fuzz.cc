// Fuzz target (a): the service layer fed arbitrary request sequences for every
// RPC, streams included, against an in-process broker (the real QueueService
// and TopicService on a gRPC server, reached through its in-process channel).
// The input picks calls and their fields; names come from a small set so that
// calls meet each other's queues. After each input every queue must conserve
// its messages (total_put == done + dead-lettered + unfinished), and nothing
// may crash, leak or hang: blocking calls wait at most --max-wait (50 ms here)
// and every client call has a deadline. The broker has users: each input
// calls as the full user, a narrow one, nobody, or with an authorization
// value of its own making (the metadata parsing fuzzed with the rest).
#include <fuzzer/FuzzedDataProvider.h>
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "basin/v1/queue.grpc.pb.h"
#include "basin/v1/topic.grpc.pb.h"
#include "broker/core/broker.h"
#include "broker/deadline_timer.h"
#include "broker/dispatcher.h"
#include "broker/security/token_hash.h"
#include "broker/security/users.h"
#include "broker/service/access.h"
#include "broker/service/queue_service.h"
#include "broker/service/topic_service.h"

namespace {

using namespace basin;  // NOLINT(google-build-using-namespace): a test driver

constexpr char kFullToken[] = "full-user-token-0123456789";
constexpr char kNarrowToken[] = "narrow-user-token-0123456789";
// This input's authorization metadata value; empty: none sent.
std::string g_authorization;

std::shared_ptr<const security::UserTable> Users() {
  auto user = [](const char* name, const char* token, const char* configure, const char* write,
                 const char* read, bool admin) {
    auto u = std::make_shared<security::User>();
    u->name = name;
    security::TokenHash h;
    (void)security::ParseTokenHash(security::HashToken(token), &h);
    u->tokens.push_back(h);
    u->configure = std::make_unique<RE2>(configure);
    u->write = std::make_unique<RE2>(write);
    u->read = std::make_unique<RE2>(read);
    u->admin = admin;
    u->rate = admin ? 0 : 50;
    u->max_queues = admin ? 0 : 1;
    return u;
  };
  return security::UserTable::FromUsers(
      {user("full", kFullToken, ".*", ".*", ".*", true),
       user("narrow", kNarrowToken, "b", "a|news\\..*", "a|b|#", false)});
}

// Everything the fuzzer talks to, made once: a gRPC server per input would
// cost more than the input.
struct World {
  World() {
    core::BrokerLimits limits;
    limits.max_message_bytes = 4096;
    limits.max_memory = 64 << 20;
    limits.max_waiters_per_queue = 64;
    limits.max_wait = std::chrono::milliseconds(50);
    limits.max_lease = std::chrono::seconds(2);
    broker = std::make_unique<core::Broker>(limits, &timer);
    auto post = [this](std::function<void()> work) { dispatcher.Post(std::move(work)); };
    queues = std::make_unique<service::QueueService>(broker.get(), &access, post);
    topics = std::make_unique<service::TopicService>(broker.get(), &access, post);
    grpc::ServerBuilder builder;
    builder.RegisterService(queues.get());
    builder.RegisterService(topics.get());
    server = builder.BuildAndStart();
    auto channel = server->InProcessChannel(grpc::ChannelArguments());
    queue_stub = v1::QueueService::NewStub(channel);
    topic_stub = v1::TopicService::NewStub(channel);
  }

  DeadlineTimer timer;
  Dispatcher dispatcher{1};
  std::unique_ptr<core::Broker> broker;
  service::Access access{Users(), service::AccessOptions{}};
  std::unique_ptr<service::QueueService> queues;
  std::unique_ptr<service::TopicService> topics;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<v1::QueueService::Stub> queue_stub;
  std::unique_ptr<v1::TopicService::Stub> topic_stub;
};

World& TheWorld() {
  static World* world = new World();  // never destroyed: outlives libFuzzer's exit
  return *world;
}

std::unique_ptr<grpc::ClientContext> Context(int ms = 300) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(ms));
  if (!g_authorization.empty()) ctx->AddMetadata("authorization", g_authorization);
  return ctx;
}

class Driver {
 public:
  explicit Driver(FuzzedDataProvider& in) : in_(in), w_(TheWorld()) {}

  void Run() {
    switch (in_.ConsumeIntegralInRange(0, 7)) {
      case 0:
        g_authorization.clear();
        break;
      case 1:
        g_authorization = std::string("Bearer ") + kNarrowToken;
        break;
      case 2: {
        // Any value gRPC lets a client send: printable ASCII.
        std::string v = in_.ConsumeRandomLengthString(80);
        for (char& c : v) c = static_cast<char>(0x20 + static_cast<unsigned char>(c) % 95);
        g_authorization = in_.ConsumeBool() ? "Bearer " + v : v;
        break;
      }
      default:
        g_authorization = std::string("Bearer ") + kFullToken;
    }
    for (int step = 0; step < 24 && in_.remaining_bytes() > 0; ++step) {
      switch (in_.ConsumeIntegralInRange(0, 17)) {
        case 0:
          CreateQueue();
          break;
        case 1:
          Simple(&v1::QueueService::Stub::DeleteQueue, Named<v1::DeleteQueueRequest>());
          break;
        case 2:
          CloseQueue();
          break;
        case 3:
          Put();
          break;
        case 4:
          Get();
          break;
        case 5:
          Tagged(0);
          break;
        case 6:
          Tagged(1);
          break;
        case 7:
          Tagged(2);
          break;
        case 8:
          Join();
          break;
        case 9:
          Produce();
          break;
        case 10:
          Consume();
          break;
        case 11:
          Publish();
          break;
        case 12:
          Subscribe();
          break;
        case 13:
          Bind(true);
          break;
        case 14:
          Bind(false);
          break;
        case 15:
          List();
          break;
        case 16:
          Simple(&v1::QueueService::Stub::GetQueue, Named<v1::GetQueueRequest>());
          break;
        case 17:
          Put();
          break;
      }
    }
    CheckAndClean();
  }

 private:
  std::string Name() {
    static const char* kNames[] = {"a", "b", "dlq", "", "bad name", "x.y-z_1"};
    return kNames[in_.ConsumeIntegralInRange<size_t>(0, std::size(kNames) - 1)];
  }
  std::string Bytes(size_t max) { return in_.ConsumeRandomLengthString(max); }
  void Duration(google::protobuf::Duration* d) {
    d->set_seconds(in_.ConsumeIntegralInRange<int64_t>(-2, 1));
    d->set_nanos(in_.ConsumeIntegral<int32_t>() % 2'000'000'000);
  }
  template <typename Req>
  Req Named() {
    Req req;
    if constexpr (requires { req.set_name(""); }) {
      req.set_name(Name());
    } else {
      req.set_queue(Name());
    }
    return req;
  }
  template <typename Method, typename Req>
  void Simple(Method method, const Req& req) {
    auto ctx = Context();
    typename std::remove_pointer_t<decltype(Response(method))> resp;
    (void)(w_.queue_stub.get()->*method)(ctx.get(), req, &resp);
  }
  template <typename Resp, typename Req>
  static Resp* Response(grpc::Status (v1::QueueService::Stub::*)(grpc::ClientContext*, const Req&,
                                                                 Resp*)) {
    return nullptr;
  }

  void CreateQueue() {
    v1::CreateQueueRequest req = Named<v1::CreateQueueRequest>();
    req.set_max_size(in_.ConsumeIntegralInRange<uint64_t>(0, 20));
    auto* o = req.mutable_options();
    if (in_.ConsumeBool()) Duration(o->mutable_visibility_timeout());
    o->set_max_deliveries(in_.ConsumeIntegralInRange<uint32_t>(0, 3));
    if (in_.ConsumeBool()) o->set_dead_letter_queue(Name());
    o->set_max_bytes(in_.ConsumeIntegralInRange<uint64_t>(0, 2048));
    o->set_durable(in_.ConsumeIntegralInRange(0, 7) == 0);  // refused: no --data-dir
    Simple(&v1::QueueService::Stub::CreateQueue, req);
  }
  void CloseQueue() { Simple(&v1::QueueService::Stub::CloseQueue, Named<v1::CloseQueueRequest>()); }
  void FillMessage(v1::PutMessage* m) {
    m->set_payload(Bytes(in_.ConsumeBool() ? 64 : 5000));
    if (in_.ConsumeIntegralInRange(0, 3) == 0) (*m->mutable_headers())[Bytes(12)] = Bytes(12);
    if (in_.ConsumeBool()) m->set_dedup_id(Bytes(in_.ConsumeBool() ? 8 : 300));
  }
  void Put() {
    v1::PutRequest req = Named<v1::PutRequest>();
    if (in_.ConsumeBool()) {
      v1::PutMessage one;
      FillMessage(&one);
      req.set_payload(one.payload());
      req.set_dedup_id(one.dedup_id());
    } else {
      const int n = in_.ConsumeIntegralInRange(0, 30);
      for (int i = 0; i < n; ++i) FillMessage(req.add_messages());
    }
    if (in_.ConsumeBool()) Duration(req.mutable_timeout());
    Simple(&v1::QueueService::Stub::Put, req);
  }
  void Get() {
    v1::GetRequest req = Named<v1::GetRequest>();
    req.set_max_messages(in_.ConsumeBool() ? in_.ConsumeIntegral<uint32_t>()
                                           : in_.ConsumeIntegralInRange<uint32_t>(0, 20));
    req.set_max_bytes(in_.ConsumeBool() ? in_.ConsumeIntegral<uint64_t>() : 0);
    if (in_.ConsumeBool()) Duration(req.mutable_timeout());
    if (in_.ConsumeBool()) Duration(req.mutable_visibility_timeout());
    auto ctx = Context();
    v1::GetResponse resp;
    if (!w_.queue_stub->Get(ctx.get(), req, &resp).ok()) return;
    if (!resp.delivery_tag().empty()) tags_.push_back({req.queue(), resp.delivery_tag()});
    for (const auto& d : resp.deliveries()) tags_.push_back({req.queue(), d.delivery_tag()});
  }
  // 0: TaskDone, 1: ExtendLease, 2: Release; a tag handed out, or garbage.
  void Tagged(int which) {
    std::string queue = Name();
    std::string tag = Bytes(40);
    if (!tags_.empty() && in_.ConsumeBool()) {
      const auto& [q, t] = tags_[in_.ConsumeIntegralInRange<size_t>(0, tags_.size() - 1)];
      queue = q;
      tag = t;
    }
    if (which == 0) {
      v1::TaskDoneRequest req;
      req.set_queue(queue);
      req.set_delivery_tag(tag);
      Simple(&v1::QueueService::Stub::TaskDone, req);
    } else if (which == 1) {
      v1::ExtendLeaseRequest req;
      req.set_queue(queue);
      req.set_delivery_tag(tag);
      Duration(req.mutable_duration());
      Simple(&v1::QueueService::Stub::ExtendLease, req);
    } else {
      v1::ReleaseRequest req;
      req.set_queue(queue);
      req.set_delivery_tag(tag);
      Simple(&v1::QueueService::Stub::Release, req);
    }
  }
  void Join() {
    v1::JoinRequest req = Named<v1::JoinRequest>();
    if (in_.ConsumeBool()) Duration(req.mutable_timeout());
    Simple(&v1::QueueService::Stub::Join, req);
  }
  void Produce() {
    auto ctx = Context();
    auto stream = w_.queue_stub->Produce(ctx.get());
    const int batches = in_.ConsumeIntegralInRange(0, 5);
    for (int b = 0; b < batches; ++b) {
      v1::ProduceRequest req;
      if (b == 0 || in_.ConsumeIntegralInRange(0, 5) == 0) req.set_queue(Name());
      if (in_.ConsumeBool()) req.set_producer_id(Bytes(in_.ConsumeBool() ? 8 : 200));
      req.set_first_sequence(in_.ConsumeBool() ? in_.ConsumeIntegralInRange<uint64_t>(0, 40)
                                               : in_.ConsumeIntegral<uint64_t>());
      req.set_batch_id(b);
      const int n = in_.ConsumeIntegralInRange(0, 8);
      for (int i = 0; i < n; ++i) FillMessage(req.add_messages());
      if (!stream->Write(req)) break;
    }
    if (in_.ConsumeBool()) ctx->TryCancel();
    stream->WritesDone();
    v1::ProduceResponse resp;
    while (stream->Read(&resp)) {
    }
    (void)stream->Finish();
  }
  void Consume() {
    auto ctx = Context(in_.ConsumeIntegralInRange(20, 300));
    auto stream = w_.queue_stub->Consume(ctx.get());
    v1::ConsumeRequest open;
    open.set_queue(Name());
    open.set_prefetch(in_.ConsumeBool() ? in_.ConsumeIntegralInRange<uint32_t>(0, 5)
                                        : in_.ConsumeIntegral<uint32_t>());
    if (in_.ConsumeBool()) Duration(open.mutable_ack_timeout());
    if (!stream->Write(open)) return (void)stream->Finish();
    const int rounds = in_.ConsumeIntegralInRange(0, 4);
    v1::ConsumeResponse resp;
    for (int r = 0; r < rounds && stream->Read(&resp); ++r) {
      v1::ConsumeRequest next;
      for (const auto& d : resp.deliveries()) {
        switch (in_.ConsumeIntegralInRange(0, 3)) {
          case 0:
            next.add_acks(d.delivery_tag());
            break;
          case 1:
            next.add_releases(d.delivery_tag());
            break;
          case 2:
            next.add_extends(d.delivery_tag());
            break;
          default:
            break;
        }
      }
      if (in_.ConsumeBool()) next.add_acks(in_.ConsumeIntegral<uint64_t>());
      if (in_.ConsumeBool()) next.set_ack_up_to(in_.ConsumeIntegralInRange<uint64_t>(0, 10));
      if (in_.ConsumeBool()) next.set_release_up_to(in_.ConsumeIntegral<uint64_t>());
      if (in_.ConsumeBool()) next.set_extend_up_to(in_.ConsumeIntegral<uint64_t>());
      if (!stream->Write(next)) break;
    }
    if (in_.ConsumeBool()) ctx->TryCancel();
    stream->WritesDone();
    while (stream->Read(&resp)) {
    }
    (void)stream->Finish();
  }
  std::string Topic() {
    static const char* kTopics[] = {"a.b", "a.*", "#", "a.#.c", "", "..", "a.b.c", "*.*"};
    if (in_.ConsumeBool()) return Bytes(40);
    return kTopics[in_.ConsumeIntegralInRange<size_t>(0, std::size(kTopics) - 1)];
  }
  void Publish() {
    v1::PublishRequest req;
    req.set_topic(Topic());
    req.set_payload(Bytes(200));
    auto ctx = Context();
    v1::PublishResponse resp;
    (void)w_.topic_stub->Publish(ctx.get(), req, &resp);
  }
  void Subscribe() {
    v1::SubscribeRequest req;
    const int terms = in_.ConsumeIntegralInRange(0, 4);
    for (int i = 0; i < terms; ++i) {
      if (in_.ConsumeBool()) {
        req.add_topics(Topic());
      } else {
        req.add_patterns(Topic());
      }
    }
    req.set_buffer_messages(in_.ConsumeIntegral<uint64_t>());
    auto ctx = Context(in_.ConsumeIntegralInRange(10, 100));
    auto reader = w_.topic_stub->Subscribe(ctx.get(), req);
    v1::SubscribeResponse resp;
    for (int i = 0; i < 3 && reader->Read(&resp); ++i) {
    }
    ctx->TryCancel();
    while (reader->Read(&resp)) {
    }
    (void)reader->Finish();
  }
  void Bind(bool bind) {
    auto ctx = Context();
    if (bind) {
      v1::BindQueueRequest req;
      req.set_topic_pattern(Topic());
      req.set_queue(Name());
      v1::BindQueueResponse resp;
      (void)w_.topic_stub->BindQueue(ctx.get(), req, &resp);
    } else {
      v1::UnbindQueueRequest req;
      req.set_topic_pattern(Topic());
      req.set_queue(Name());
      v1::UnbindQueueResponse resp;
      (void)w_.topic_stub->UnbindQueue(ctx.get(), req, &resp);
    }
  }
  void List() {
    auto ctx = Context();
    if (in_.ConsumeBool()) {
      v1::ListTopicsResponse resp;
      (void)w_.topic_stub->ListTopics(ctx.get(), v1::ListTopicsRequest(), &resp);
    } else {
      v1::ListQueuesResponse resp;
      (void)w_.queue_stub->ListQueues(ctx.get(), v1::ListQueuesRequest(), &resp);
    }
  }

  // Every queue conserves its messages; then all are deleted (those named as
  // dead-letter queues last) so inputs do not pile state on each other.
  void CheckAndClean() {
    for (int pass = 0; pass < 2; ++pass) {
      for (const auto& q : w_.broker->ListQueues()) {
        const core::QueueStats s = q->Stats();
        if (s.total_put != s.total_done + s.total_dead_lettered + s.unfinished) {
          std::fprintf(
              stderr, "queue '%s' lost count: put %lu, done %lu, dead %lu, unfinished %lu\n",
              q->name().c_str(), s.total_put, s.total_done, s.total_dead_lettered, s.unfinished);
          std::abort();
        }
        (void)w_.broker->DeleteQueue(q->name());
      }
    }
  }

  FuzzedDataProvider& in_;
  World& w_;
  std::vector<std::pair<std::string, std::string>> tags_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  Driver(in).Run();
  return 0;
}
