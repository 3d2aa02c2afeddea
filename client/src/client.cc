#include "basin/client.h"

#include <algorithm>
#include <optional>

#include "basin/v1/queue.grpc.pb.h"
#include "connection.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "outgoing.h"

namespace basin {
namespace {

using Clock = std::chrono::steady_clock;
using detail::Call;
using std::chrono::milliseconds;

using detail::FromProto;
using detail::ToProto;

QueueInfo FromProto(const v1::QueueInfo& p) {
  QueueInfo info;
  info.name = p.name();
  info.options.max_size = p.max_size();
  info.options.visibility_timeout = FromProto(p.options().visibility_timeout());
  info.options.max_deliveries = p.options().max_deliveries();
  info.options.dead_letter_queue = p.options().dead_letter_queue();
  info.options.max_bytes = p.options().max_bytes();
  info.options.durable = p.options().durable();
  for (const auto& d : p.options().retry_backoff())
    info.options.retry_backoff.push_back(FromProto(d));
  info.options.message_ttl = FromProto(p.options().message_ttl());
  info.options.max_priority = p.options().max_priority();
  const v1::QueueStats& s = p.stats();
  QueueStats& st = info.stats;
  st.size = s.size();
  st.bytes = s.bytes();
  st.full = s.full();
  st.empty = s.empty();
  st.unfinished = s.unfinished();
  st.in_flight = s.in_flight();
  st.waiting_getters = s.waiting_getters();
  st.waiting_putters = s.waiting_putters();
  st.waiting_joiners = s.waiting_joiners();
  st.total_put = s.total_put();
  st.total_delivered = s.total_delivered();
  st.total_done = s.total_done();
  st.total_redelivered = s.total_redelivered();
  st.total_dead_lettered = s.total_dead_lettered();
  st.total_rejected = s.total_rejected();
  st.delayed = s.delayed();
  st.total_expired = s.total_expired();
  st.groups = s.groups();
  st.active_groups = s.active_groups();
  st.closed = s.closed();
  for (const v1::ConsumerStats& c : p.consumers()) {
    st.consumers.push_back({c.id(), c.prefetch(), c.in_flight(), c.delivered(), c.acked()});
  }
  info.bindings.assign(p.bindings().begin(), p.bindings().end());
  return info;
}

// The wait to ask for in one call: what is left of the caller's time, at most
// the SDK's per-call cap. `forever` calls always ask for the cap.
milliseconds NextWait(Clock::time_point deadline, bool forever, milliseconds cap) {
  if (forever) return cap;
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
  return std::clamp(left, milliseconds(0), cap);
}

// Runs a blocking call until it succeeds or the caller's time is up: the
// broker caps one call's wait, and a call that ended at the cap (throwing
// `TimedOut`) is issued again. `timeout` is the request's timeout field.
template <typename TimedOut, typename Req, typename Resp>
Resp CallUntil(detail::Connection& conn,
               grpc::Status (v1::QueueService::Stub::*method)(grpc::ClientContext*, const Req&,
                                                              Resp*),
               Req& req, google::protobuf::Duration* timeout, Clock::time_point deadline,
               bool forever) {
  for (;;) {
    const milliseconds wait = NextWait(deadline, forever, conn.options().max_call_wait);
    ToProto(wait, timeout);
    try {
      return Call(conn, method, req, wait);
    } catch (const TimedOut&) {
      if (!forever && Clock::now() >= deadline) throw;
    }
  }
}

}  // namespace

Message detail::MakeMessage(std::shared_ptr<Connection> conn,
                            std::shared_ptr<const std::string> queue, uint64_t id,
                            std::string payload, Headers headers, uint32_t delivery_count,
                            std::string tag, milliseconds lease) {
  Message m;
  m.conn_ = std::move(conn);
  m.queue_ = std::move(queue);
  m.id_ = id;
  m.payload_ = std::move(payload);
  m.headers_ = std::move(headers);
  m.delivery_count_ = delivery_count;
  m.delivery_tag_ = std::move(tag);
  m.lease_ = lease;
  return m;
}

namespace {
const std::string kNoName;  // a moved-from Queue's, a default Message's
}  // namespace

const std::string& Message::queue() const { return queue_ ? *queue_ : kNoName; }

const std::string& Queue::name() const { return name_ ? *name_ : kNoName; }

milliseconds Message::extend(milliseconds d) const {
  v1::ExtendLeaseRequest req;
  req.set_queue(queue());
  req.set_delivery_tag(delivery_tag_);
  ToProto(d, req.mutable_duration());
  auto resp = Call<v1::ExtendLeaseRequest, v1::ExtendLeaseResponse>(
      *conn_, &v1::QueueService::Stub::ExtendLease, req);
  return FromProto(resp.lease_duration());
}

namespace {

void ReleaseTag(detail::Connection& conn, const std::string& queue, const std::string& tag,
                std::optional<milliseconds> delay, bool reject) {
  v1::ReleaseRequest req;
  req.set_queue(queue);
  req.set_delivery_tag(tag);
  if (delay) ToProto(*delay, req.mutable_delay());
  req.set_reject(reject);
  Call<v1::ReleaseRequest, v1::ReleaseResponse>(conn, &v1::QueueService::Stub::Release, req);
}

}  // namespace

void Message::release() const { ReleaseTag(*conn_, queue(), delivery_tag_, std::nullopt, false); }
void Message::release(milliseconds delay) const {
  ReleaseTag(*conn_, queue(), delivery_tag_, delay, false);
}
void Message::reject() const { ReleaseTag(*conn_, queue(), delivery_tag_, std::nullopt, true); }
void Queue::release(const std::string& delivery_tag) const {
  ReleaseTag(*conn_, *name_, delivery_tag, std::nullopt, false);
}
void Queue::release(const std::string& delivery_tag, milliseconds delay) const {
  ReleaseTag(*conn_, *name_, delivery_tag, delay, false);
}
void Queue::reject(const std::string& delivery_tag) const {
  ReleaseTag(*conn_, *name_, delivery_tag, std::nullopt, true);
}

uint64_t Queue::put_until(std::string_view payload, const Headers& headers,
                          Clock::time_point deadline, bool forever) const {
  v1::PutRequest req;
  req.set_queue(*name_);
  req.set_payload(payload.data(), payload.size());
  req.mutable_headers()->insert(headers.begin(), headers.end());
  return CallUntil<Full>(*conn_, &v1::QueueService::Stub::Put, req, req.mutable_timeout(), deadline,
                         forever)
      .message_id();
}

uint64_t Queue::put_until(const OutgoingMessage& message, Clock::time_point deadline,
                          bool forever) const {
  v1::PutRequest req;
  req.set_queue(*name_);
  req.set_payload(message.payload);
  req.mutable_headers()->insert(message.headers.begin(), message.headers.end());
  req.set_dedup_id(message.dedup_id);
  detail::ScheduleToProto(message, &req);
  return CallUntil<Full>(*conn_, &v1::QueueService::Stub::Put, req, req.mutable_timeout(), deadline,
                         forever)
      .message_id();
}

uint64_t Queue::put(const OutgoingMessage& message) const {
  return put_until(message, Clock::time_point::max(), true);
}
uint64_t Queue::put(const OutgoingMessage& message, Timeout timeout) const {
  return put_until(message, Clock::now() + timeout, false);
}

uint64_t Queue::put(std::string_view payload, const Headers& headers) const {
  return put_until(payload, headers, Clock::time_point::max(), true);
}
uint64_t Queue::put(std::string_view payload, Timeout timeout, const Headers& headers) const {
  return put_until(payload, headers, Clock::now() + timeout, false);
}
uint64_t Queue::put_nowait(std::string_view payload, const Headers& headers) const {
  return put_until(payload, headers, Clock::now(), false);
}

std::vector<Message> Queue::get_until(size_t max_messages, Clock::time_point deadline, bool forever,
                                      milliseconds visibility) const {
  v1::GetRequest req;
  req.set_queue(*name_);
  if (visibility > milliseconds(0)) ToProto(visibility, req.mutable_visibility_timeout());
  const bool batch = max_messages > 1;
  if (batch) req.set_max_messages(static_cast<uint32_t>(max_messages));
  v1::GetResponse resp = CallUntil<Empty>(*conn_, &v1::QueueService::Stub::Get, req,
                                          req.mutable_timeout(), deadline, forever);
  auto make = [&](v1::Message* pm, std::string* tag, const google::protobuf::Duration& lease) {
    return detail::MakeMessage(conn_, name_, pm->message_id(), std::move(*pm->mutable_payload()),
                               Headers(pm->headers().begin(), pm->headers().end()),
                               pm->delivery_count(), std::move(*tag), FromProto(lease));
  };
  std::vector<Message> out;
  if (!batch) {
    out.push_back(make(resp.mutable_message(), resp.mutable_delivery_tag(), resp.lease_duration()));
    return out;
  }
  for (v1::Delivery& d : *resp.mutable_deliveries()) {
    out.push_back(make(d.mutable_message(), d.mutable_delivery_tag(), d.lease_duration()));
  }
  return out;
}

Message Queue::get() const {
  return std::move(get_until(1, Clock::time_point::max(), true, milliseconds(0)).front());
}
Message Queue::get(Timeout timeout) const {
  return std::move(get_until(1, Clock::now() + timeout, false, milliseconds(0)).front());
}
Message Queue::get_nowait() const {
  return std::move(get_until(1, Clock::now(), false, milliseconds(0)).front());
}
Message Queue::get(Timeout timeout, milliseconds visibility) const {
  return std::move(get_until(1, Clock::now() + timeout, false, visibility).front());
}
std::vector<Message> Queue::get_batch(size_t max_messages) const {
  return get_until(max_messages, Clock::time_point::max(), true, milliseconds(0));
}
std::vector<Message> Queue::get_batch(size_t max_messages, Timeout timeout) const {
  return get_until(max_messages, Clock::now() + timeout, false, milliseconds(0));
}

std::vector<PutOutcome> Queue::put_batch_until(const std::vector<OutgoingMessage>& messages,
                                               Clock::time_point deadline, bool forever) const {
  v1::PutRequest req;
  req.set_queue(*name_);
  for (const OutgoingMessage& m : messages) {
    v1::PutMessage* pm = req.add_messages();
    pm->set_payload(m.payload);
    pm->mutable_headers()->insert(m.headers.begin(), m.headers.end());
    pm->set_dedup_id(m.dedup_id);
    detail::ScheduleToProto(m, pm);
  }
  const v1::PutResponse resp = CallUntil<Full>(*conn_, &v1::QueueService::Stub::Put, req,
                                               req.mutable_timeout(), deadline, forever);
  std::vector<PutOutcome> out;
  out.reserve(static_cast<size_t>(resp.results_size()));
  for (const v1::PutResult& r : resp.results()) {
    out.push_back({r.message_id(), r.duplicate(), r.error_reason(), r.error_message()});
  }
  return out;
}

std::vector<PutOutcome> Queue::put_batch(const std::vector<OutgoingMessage>& messages) const {
  return put_batch_until(messages, Clock::time_point::max(), true);
}
std::vector<PutOutcome> Queue::put_batch(const std::vector<OutgoingMessage>& messages,
                                         Timeout timeout) const {
  return put_batch_until(messages, Clock::now() + timeout, false);
}

void Queue::task_done(const Message& m) const { task_done(m.delivery_tag()); }

void Queue::task_done(const std::string& delivery_tag) const {
  v1::TaskDoneRequest req;
  req.set_queue(*name_);
  req.set_delivery_tag(delivery_tag);
  Call<v1::TaskDoneRequest, v1::TaskDoneResponse>(*conn_, &v1::QueueService::Stub::TaskDone, req);
}

void Queue::join_until(Clock::time_point deadline, bool forever) const {
  v1::JoinRequest req;
  req.set_queue(*name_);
  CallUntil<JoinTimeout>(*conn_, &v1::QueueService::Stub::Join, req, req.mutable_timeout(),
                         deadline, forever);
}

void Queue::join() const { join_until(Clock::time_point::max(), true); }
void Queue::join(Timeout timeout) const { join_until(Clock::now() + timeout, false); }

QueueInfo Queue::info() const {
  v1::GetQueueRequest req;
  req.set_name(*name_);
  return FromProto(Call<v1::GetQueueRequest, v1::GetQueueResponse>(
                       *conn_, &v1::QueueService::Stub::GetQueue, req)
                       .queue());
}

uint64_t Queue::qsize() const { return info().stats.size; }
bool Queue::empty() const { return info().stats.empty; }
bool Queue::full() const { return info().stats.full; }

bool Queue::close() const {
  v1::CloseQueueRequest req;
  req.set_queue(*name_);
  return Call<v1::CloseQueueRequest, v1::CloseQueueResponse>(
             *conn_, &v1::QueueService::Stub::CloseQueue, req)
      .already_closed();
}

Client::Client(const std::string& address, ClientOptions options)
    : conn_(std::make_shared<detail::Connection>(address, options)) {}

Queue Client::queue(std::string name) const { return Queue(conn_, std::move(name)); }

Queue Client::queue(std::string name, const QueueOptions& options) const {
  v1::CreateQueueRequest req;
  req.set_name(name);
  req.set_max_size(options.max_size);
  v1::QueueOptions* o = req.mutable_options();
  if (options.visibility_timeout > milliseconds(0)) {
    ToProto(options.visibility_timeout, o->mutable_visibility_timeout());
  }
  o->set_max_deliveries(options.max_deliveries);
  o->set_dead_letter_queue(options.dead_letter_queue);
  o->set_max_bytes(options.max_bytes);
  o->set_durable(options.durable);
  for (milliseconds d : options.retry_backoff) ToProto(d, o->add_retry_backoff());
  if (options.message_ttl > milliseconds(0)) ToProto(options.message_ttl, o->mutable_message_ttl());
  o->set_max_priority(options.max_priority);
  Call<v1::CreateQueueRequest, v1::CreateQueueResponse>(*conn_,
                                                        &v1::QueueService::Stub::CreateQueue, req);
  return Queue(conn_, std::move(name));
}

std::vector<QueueInfo> Client::list_queues() const {
  auto resp = Call<v1::ListQueuesRequest, v1::ListQueuesResponse>(
      *conn_, &v1::QueueService::Stub::ListQueues, v1::ListQueuesRequest());
  std::vector<QueueInfo> out;
  for (const auto& q : resp.queues()) out.push_back(FromProto(q));
  return out;
}

QueueInfo Client::queue_info(const std::string& name) const { return queue(name).info(); }

uint64_t Client::delete_queue(const std::string& name) const {
  v1::DeleteQueueRequest req;
  req.set_name(name);
  return Call<v1::DeleteQueueRequest, v1::DeleteQueueResponse>(
             *conn_, &v1::QueueService::Stub::DeleteQueue, req)
      .dropped_messages();
}

ServerInfo Client::server_info() const {
  const auto resp =
      detail::CallOn(*conn_, conn_->server_stub(), &v1::ServerService::Stub::GetServerInfo,
                     v1::GetServerInfoRequest());
  ServerInfo info;
  info.version = resp.version();
  info.revision = resp.revision();
  info.build_type = resp.build_type();
  info.started_at = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(resp.started_at().seconds()) +
          std::chrono::nanoseconds(resp.started_at().nanos())));
  info.uptime = FromProto(resp.uptime());
  for (const auto& s : resp.settings()) info.settings.push_back({s.name(), s.value(), s.source()});
  info.config_file = resp.config_file();
  const auto& l = resp.limits();
  info.limits = {l.max_message_bytes(),  l.max_memory_bytes(),      l.memory_used_bytes(),
                 l.max_queues(),         l.max_waiters_per_queue(), FromProto(l.max_wait()),
                 l.max_batch_messages(), l.max_get_messages(),      l.max_calls_per_connection(),
                 l.user_rate(),          l.user_max_queues()};
  const auto& sec = resp.security();
  info.security = {sec.transport(),
                   sec.users(),
                   sec.unauthenticated_total(),
                   sec.permission_denied_total(),
                   sec.rate_limited_total(),
                   sec.queue_quota_refused_total()};
  return info;
}

bool Client::healthy(Timeout timeout) const {
  auto stub = grpc::health::v1::Health::NewStub(conn_->channel());
  grpc::ClientContext ctx;
  conn_->Authorize(&ctx);
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  const grpc::Status status = stub->Check(&ctx, req, &resp);
  return status.ok() && resp.status() == grpc::health::v1::HealthCheckResponse::SERVING;
}

}  // namespace basin
