#include "broker/service/convert.h"

#include <algorithm>

namespace basin::service {
namespace {

constexpr int64_t kMaxDurationSeconds = 315'576'000'000;
constexpr int32_t kNanosPerSecond = 1'000'000'000;

}  // namespace

core::Result<core::Duration> FromProto(const google::protobuf::Duration& d,
                                       std::string_view field) {
  const bool valid = d.seconds() >= -kMaxDurationSeconds && d.seconds() <= kMaxDurationSeconds &&
                     d.nanos() > -kNanosPerSecond && d.nanos() < kNanosPerSecond &&
                     !(d.seconds() > 0 && d.nanos() < 0) && !(d.seconds() < 0 && d.nanos() > 0);
  if (!valid) {
    return core::Error{core::Errc::kInvalidTimeout, std::string(field) +
                                                        " is not a valid duration (seconds " +
                                                        std::to_string(d.seconds()) + ", nanos " +
                                                        std::to_string(d.nanos()) + ")"};
  }
  if (d.seconds() < 0 || d.nanos() < 0) {
    return core::Error{core::Errc::kInvalidTimeout, std::string(field) + " must not be negative"};
  }
  // Clamp before converting so absurd values cannot overflow the clock's range.
  constexpr int64_t kClampSeconds = int64_t{100} * 365 * 24 * 3600;
  return std::chrono::duration_cast<core::Duration>(
      std::chrono::seconds(std::min<int64_t>(d.seconds(), kClampSeconds)) +
      std::chrono::nanoseconds(d.nanos()));
}

void ToProto(core::Duration d, google::protobuf::Duration* out) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  out->set_seconds(ns / kNanosPerSecond);
  out->set_nanos(static_cast<int32_t>(ns % kNanosPerSecond));
}

core::Result<core::TimePoint> WaitDeadline(const grpc::ServerContextBase& ctx, bool has_timeout,
                                           const google::protobuf::Duration& timeout,
                                           core::Duration max_wait, core::TimePoint now) {
  core::Duration wait = max_wait;
  if (has_timeout) {
    auto parsed = FromProto(timeout, "timeout");
    if (!parsed.ok()) return parsed.error();
    wait = std::min(parsed.value(), max_wait);
  }
  core::TimePoint deadline = now + wait;
  const auto call_deadline = ctx.deadline();
  if (call_deadline != std::chrono::system_clock::time_point::max()) {
    const auto left = call_deadline - std::chrono::system_clock::now();
    deadline = std::min(deadline, now + std::chrono::duration_cast<core::Duration>(left));
  }
  return deadline;
}

core::Headers FromProto(const google::protobuf::Map<std::string, std::string>& headers) {
  return core::Headers(headers.begin(), headers.end());
}

namespace {

// A wall-clock time, checked as google.protobuf.Timestamp defines it
// (0001-01-01 to 9999-12-31), as a steady-clock time from `now`. One
// further ahead than the core could ever accept stops there.
core::Result<core::TimePoint> ReadyTime(const google::protobuf::Timestamp& t,
                                        std::string_view field, core::TimePoint now) {
  constexpr int64_t kMinSeconds = -62'135'596'800;
  constexpr int64_t kMaxSeconds = 253'402'300'799;
  if (t.seconds() < kMinSeconds || t.seconds() > kMaxSeconds || t.nanos() < 0 ||
      t.nanos() >= kNanosPerSecond) {
    return core::Error{core::Errc::kInvalidArgument, std::string(field) +
                                                         " is not a valid timestamp (seconds " +
                                                         std::to_string(t.seconds()) + ", nanos " +
                                                         std::to_string(t.nanos()) + ")"};
  }
  // In seconds first: a far timestamp in nanoseconds overflows.
  constexpr auto kFar = std::chrono::hours(24 * 365);
  const auto wall_now = std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::system_clock::now().time_since_epoch());
  const int64_t now_seconds = std::chrono::duration_cast<std::chrono::seconds>(wall_now).count();
  if (t.seconds() > now_seconds + std::chrono::seconds(kFar).count()) {
    return core::AddSaturating(now, kFar);
  }
  if (t.seconds() < now_seconds - 1) return now;
  const auto ahead =
      std::chrono::seconds(t.seconds()) + std::chrono::nanoseconds(t.nanos()) - wall_now;
  if (ahead <= std::chrono::nanoseconds::zero()) return now;
  return now + std::chrono::duration_cast<core::Duration>(ahead);
}

// Fills in what a PutRequest or PutMessage asks beyond payload, headers and
// dedup_id.
template <typename Proto>
void ReadAttrs(const Proto& m, core::TimePoint now, core::MessageSpec* spec) {
  if (m.priority() > core::kMaxPriority) {
    spec->invalid = core::Error{core::Errc::kInvalidArgument,
                                "priority " + std::to_string(m.priority()) +
                                    " is above the limit of " + std::to_string(core::kMaxPriority)};
    return;
  }
  spec->attrs.priority = static_cast<uint8_t>(m.priority());
  spec->attrs.group = m.group();
  if (m.has_expires_after()) {
    auto ttl = FromProto(m.expires_after(), "expires_after");
    if (ttl.ok() && ttl.value() == core::Duration::zero()) {
      ttl = core::Error{core::Errc::kInvalidTimeout, "expires_after must be positive"};
    }
    if (!ttl.ok()) {
      spec->invalid = ttl.error();
      return;
    }
    spec->attrs.expires_at = core::AddSaturating(now, ttl.value());
  }
  if (m.has_deliver_after()) {
    auto after = FromProto(m.deliver_after(), "deliver_after");
    if (!after.ok()) {
      spec->invalid = after.error();
      return;
    }
    spec->attrs.ready_at = core::AddSaturating(now, after.value());
  } else if (m.has_deliver_at()) {
    auto at = ReadyTime(m.deliver_at(), "deliver_at", now);
    if (!at.ok()) {
      spec->invalid = at.error();
      return;
    }
    spec->attrs.ready_at = at.value();
  }
}

}  // namespace

std::vector<core::MessageSpec> ToSpecs(
    const google::protobuf::RepeatedPtrField<v1::PutMessage>& msgs,
    std::vector<core::Headers>* headers, core::TimePoint now) {
  headers->clear();
  headers->reserve(msgs.size());
  std::vector<core::MessageSpec> specs;
  specs.reserve(msgs.size());
  for (const v1::PutMessage& m : msgs) {
    headers->push_back(FromProto(m.headers()));
    core::MessageSpec& spec = specs.emplace_back();
    spec.payload = m.payload();
    spec.headers = &headers->back();
    spec.dedup_id = m.dedup_id();
    ReadAttrs(m, now, &spec);
  }
  return specs;
}

core::MessageSpec ToSpec(const v1::PutRequest& req, std::vector<core::Headers>* headers,
                         core::TimePoint now) {
  headers->push_back(FromProto(req.headers()));
  core::MessageSpec spec;
  spec.payload = req.payload();
  spec.headers = &headers->back();
  spec.dedup_id = req.dedup_id();
  ReadAttrs(req, now, &spec);
  return spec;
}

void ToProto(const core::PutResult& result, v1::PutResult* out) {
  out->set_message_id(result.message_id);
  out->set_duplicate(result.duplicate);
  if (result.error) {
    out->set_error_reason(std::string(ToWire(result.error->code).reason));
    out->set_error_message(result.error->message);
  }
}

void ToProto(core::Delivery&& delivery, v1::Message* out) {
  out->set_message_id(delivery.message_id);
  out->set_payload(std::move(delivery.payload));
  out->mutable_headers()->insert(delivery.headers.begin(), delivery.headers.end());
  out->set_delivery_count(delivery.delivery_count);
}

void ToProto(const core::StreamDelivery& delivery, v1::Message* out) {
  const core::Message& m = *delivery.message;
  out->set_message_id(m.id());
  out->set_payload(std::string(m.payload()));
  const core::Headers headers = m.headers();
  out->mutable_headers()->insert(headers.begin(), headers.end());
  out->set_delivery_count(delivery.delivery_count);
}

void ToColumns(const std::vector<core::StreamDelivery>& deliveries, v1::DeliveryColumns* out) {
  const int n = static_cast<int>(deliveries.size());
  out->mutable_delivery_tags()->Reserve(n);
  out->mutable_message_ids()->Reserve(n);
  out->mutable_payloads()->Reserve(n);
  out->mutable_delivery_counts()->Reserve(n);
  for (int i = 0; i < n; ++i) {
    const core::StreamDelivery& d = deliveries[static_cast<size_t>(i)];
    const core::Message& m = *d.message;
    out->add_delivery_tags(d.tag);
    out->add_message_ids(m.id());
    out->add_payloads(std::string(m.payload()));
    out->add_delivery_counts(d.delivery_count);
    const core::Headers headers = m.headers();
    if (!headers.empty()) {
      (*out->mutable_headers())[static_cast<uint32_t>(i)].mutable_entries()->insert(headers.begin(),
                                                                                    headers.end());
    }
  }
}

void ToProto(const core::Queue& queue, const std::vector<std::string>& bindings,
             v1::QueueInfo* out) {
  out->mutable_bindings()->Assign(bindings.begin(), bindings.end());
  const core::QueueConfig& c = queue.config();
  out->set_name(c.name);
  out->set_max_size(c.max_size);
  auto* o = out->mutable_options();
  ToProto(c.visibility_timeout, o->mutable_visibility_timeout());
  o->set_max_deliveries(c.max_deliveries);
  o->set_dead_letter_queue(c.dead_letter_queue);
  o->set_max_bytes(c.max_bytes);
  o->set_durable(c.durable);
  for (core::Duration d : c.retry_backoff) ToProto(d, o->add_retry_backoff());
  if (c.message_ttl > core::Duration::zero()) ToProto(c.message_ttl, o->mutable_message_ttl());
  o->set_max_priority(c.max_priority);
  const core::QueueStats s = queue.Stats();
  auto* p = out->mutable_stats();
  p->set_size(s.size);
  p->set_bytes(s.bytes);
  p->set_full(s.full);
  p->set_empty(s.empty);
  p->set_unfinished(s.unfinished);
  p->set_in_flight(s.in_flight);
  p->set_waiting_getters(s.waiting_getters);
  p->set_waiting_putters(s.waiting_putters);
  p->set_waiting_joiners(s.waiting_joiners);
  p->set_total_put(s.total_put);
  p->set_total_delivered(s.total_delivered);
  p->set_total_done(s.total_done);
  p->set_total_redelivered(s.total_redelivered);
  p->set_total_dead_lettered(s.total_dead_lettered);
  p->set_total_rejected(s.total_rejected);
  p->set_delayed(s.delayed);
  p->set_total_expired(s.total_expired);
  p->set_groups(s.groups);
  p->set_active_groups(s.active_groups);
  for (const core::ConsumerStats& c : s.consumers) {
    v1::ConsumerStats* pc = out->add_consumers();
    pc->set_id(c.id);
    pc->set_prefetch(c.prefetch);
    pc->set_in_flight(c.in_flight);
    pc->set_delivered(c.delivered);
    pc->set_acked(c.acked);
  }
  p->set_closed(s.closed);
}

}  // namespace basin::service
