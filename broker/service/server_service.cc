#include "broker/service/server_service.h"

#include "broker/build_info.h"
#include "broker/core/queue_config.h"
#include "broker/service/convert.h"
#include "broker/service/reply.h"

namespace basin::service {
grpc::ServerUnaryReactor* ServerService::GetServerInfo(grpc::CallbackServerContext* ctx,
                                                       const v1::GetServerInfoRequest*,
                                                       v1::GetServerInfoResponse* resp) {
  if (access_->enabled()) {
    auto who = access_->Identify(ctx, "GetServerInfo");
    if (!who.ok()) return ReplyError(ctx, who.error());
    if (auto denied = access_->RequireAdmin(who.value(), ctx, "GetServerInfo")) {
      return ReplyError(ctx, *denied);
    }
  }
  resp->set_version(std::string(BuildVersion()));
  resp->set_revision(std::string(BuildRevision()));
  resp->set_build_type(std::string(BuildType()));
  const auto since_epoch = facts_.started_at.time_since_epoch();
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
  resp->mutable_started_at()->set_seconds(seconds.count());
  resp->mutable_started_at()->set_nanos(static_cast<int32_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - seconds).count()));
  ToProto(
      std::chrono::duration_cast<core::Duration>(std::chrono::steady_clock::now() - facts_.started),
      resp->mutable_uptime());
  for (const ServerFacts::Setting& s : facts_.settings) {
    v1::Setting* out = resp->add_settings();
    out->set_name(s.name);
    out->set_value(s.value);
    out->set_source(s.source);
  }
  resp->set_config_file(facts_.config_file);
  const core::BrokerLimits& limits = broker_->limits();
  v1::Limits* l = resp->mutable_limits();
  l->set_max_message_bytes(limits.max_message_bytes);
  l->set_max_memory_bytes(limits.max_memory);
  l->set_memory_used_bytes(broker_->memory().used());
  l->set_max_queues(limits.max_queues);
  l->set_max_waiters_per_queue(limits.max_waiters_per_queue);
  ToProto(limits.max_wait, l->mutable_max_wait());
  l->set_max_batch_messages(core::kMaxBatchMessages);
  l->set_max_get_messages(core::kMaxGetMessages);
  l->set_max_calls_per_connection(facts_.max_calls_per_connection);
  l->set_user_rate(facts_.user_rate);
  l->set_user_max_queues(facts_.user_max_queues);
  v1::Security* sec = resp->mutable_security();
  sec->set_transport(facts_.transport ? facts_.transport() : "plaintext");
  sec->set_users(access_->users());
  const AccessCounters refused = access_->counters();
  sec->set_unauthenticated_total(refused.unauthenticated);
  sec->set_permission_denied_total(refused.permission_denied);
  sec->set_rate_limited_total(refused.rate_limited);
  sec->set_queue_quota_refused_total(refused.quota_refused);
  return Reply(ctx, grpc::Status::OK);
}

}  // namespace basin::service
