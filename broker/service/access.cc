#include "broker/service/access.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <unordered_set>

#include "broker/core/json_string.h"

namespace basin::service {
namespace {

constexpr std::string_view kBearer = "Bearer ";
// Cached token lookups per users file; past it the cache starts again, so a
// client inventing tokens costs hashing, never memory.
constexpr size_t kMaxCachedTokens = 4096;
// Longer tokens are hashed on every call rather than cached: the caches stay
// within 2 x 4096 x 256 bytes whatever clients send.
constexpr size_t kMaxCachedTokenBytes = 256;
constexpr uint64_t kAuditPerSecond = 100;
// A rate's bucket holds one second of it (at least one message): a burst may
// use what the previous idle second left.
constexpr double kBurstSeconds = 1.0;

double Capacity(double rate) { return std::max(1.0, rate * kBurstSeconds); }

struct TransparentHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// The names a client certificate carries: its common name and every
// subject alternative name. Empty without mutual TLS.
std::vector<std::string> CertificateNames(grpc::ServerContextBase* ctx) {
  std::vector<std::string> names;
  const std::shared_ptr<const grpc::AuthContext> auth = ctx->auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return names;
  for (const char* property : {"x509_common_name", "x509_subject_alternative_name"}) {
    for (const grpc::string_ref& v : auth->FindPropertyValues(property)) {
      names.emplace_back(v.data(), v.size());
    }
  }
  return names;
}

}  // namespace

// One user's token bucket.
struct Access::Bucket {
  RankedMutex<LockRank::kRateBucket> mu;
  double tokens = 0;
  std::chrono::steady_clock::time_point last{};
};

// The users in force, with what was learnt from them: replaced whole on SIGHUP.
struct Access::State {
  std::shared_ptr<const security::UserTable> table;
  bool any_certificates = false;
  RankedSharedMutex<LockRank::kAccessCache> mu;  // guards the two caches
  std::unordered_map<std::string, std::shared_ptr<const security::User>, TransparentHash,
                     std::equal_to<>>
      by_token;
  std::unordered_set<std::string, TransparentHash, std::equal_to<>> bad_tokens;
  // By user name, fixed at birth; a user still in the next file keeps its
  // bucket, so a SIGHUP (logrotate's too) hands out no fresh burst.
  std::unordered_map<std::string, std::shared_ptr<Bucket>, TransparentHash, std::equal_to<>>
      buckets;
  uint64_t generation = 0;
};

Access::Access(std::shared_ptr<const security::UserTable> users, AccessOptions options)
    : options_(std::move(options)) {
  Replace(std::move(users));
}

Access::~Access() = default;

void Access::Replace(std::shared_ptr<const security::UserTable> users) {
  auto state = std::make_shared<State>();
  state->table = users != nullptr ? std::move(users) : security::UserTable::FromUsers({});
  const std::shared_ptr<State> old = this->state();
  const auto now = std::chrono::steady_clock::now();
  for (const auto& u : state->table->users()) {
    if (!u->certificates.empty()) state->any_certificates = true;
    std::shared_ptr<Bucket> bucket;
    if (old != nullptr) {
      if (auto it = old->buckets.find(u->name); it != old->buckets.end()) bucket = it->second;
    }
    if (bucket == nullptr) {
      bucket = std::make_shared<Bucket>();
      bucket->last = now;
      bucket->tokens = Capacity(RateOf(*u));
    }
    state->buckets.emplace(u->name, std::move(bucket));
  }
  state->generation = generation_.fetch_add(1) + 1;
  const bool enabled = !state->table->empty();
  {
    std::lock_guard lock(state_mu_);
    state_ = std::move(state);
  }
  enabled_.store(enabled, std::memory_order_release);
}

core::Error Access::Unauthenticated(const Peer& peer, std::string_view method,
                                    std::string_view object, std::string_view detail,
                                    std::string message) {
  unauthenticated_.fetch_add(1, std::memory_order_relaxed);
  Audit("unauthenticated", Caller{}, peer, method, object, detail);
  return core::Error{core::Errc::kUnauthenticated, std::move(message)};
}

std::shared_ptr<Access::State> Access::state() const {
  std::lock_guard lock(state_mu_);
  return state_;
}

size_t Access::users() const { return state()->table->size(); }

core::Result<Caller> Access::IdentifyBearer(State& state, std::string_view value, const Peer& peer,
                                            std::string_view method) {
  if (value.substr(0, kBearer.size()) != kBearer) {
    return Unauthenticated(peer, method, "", "authorization is not Bearer",
                           "the authorization metadata must be 'Bearer <token>'");
  }
  const std::string_view token = value.substr(kBearer.size());
  bool known_bad = false;
  {
    std::shared_lock lock(state.mu);
    if (auto it = state.by_token.find(token); it != state.by_token.end()) {
      return Caller{it->second, state.generation};
    }
    known_bad = state.bad_tokens.contains(token);
  }
  std::shared_ptr<const security::User> user;
  if (!known_bad && security::ValidTokenText(token)) {
    user = state.table->FindByToken(token);  // hashing: outside every lock
    if (token.size() <= kMaxCachedTokenBytes) {
      std::unique_lock lock(state.mu);
      if (user != nullptr) {
        if (state.by_token.size() >= kMaxCachedTokens) state.by_token.clear();
        state.by_token.emplace(std::string(token), user);
      } else {
        if (state.bad_tokens.size() >= kMaxCachedTokens) state.bad_tokens.clear();
        state.bad_tokens.emplace(token);
      }
    }
  }
  if (user != nullptr) return Caller{std::move(user), state.generation};
  return Unauthenticated(peer, method, "", "no user has this token",
                         "the bearer token is not one this broker knows");
}

core::Result<Caller> Access::Identify(grpc::ServerContextBase* ctx, std::string_view method) {
  if (!enabled()) return Caller{};
  const std::shared_ptr<State> state = this->state();
  const Peer peer{ctx, {}};
  const auto& metadata = ctx->client_metadata();
  if (const auto header = metadata.find("authorization"); header != metadata.end()) {
    return IdentifyBearer(*state, std::string_view(header->second.data(), header->second.size()),
                          peer, method);
  }
  if (state->any_certificates) {
    const std::vector<std::string> names = CertificateNames(ctx);
    if (!names.empty()) {
      if (auto user = state->table->FindByCertificate(names)) {
        return Caller{std::move(user), state->generation};
      }
    }
  }
  return Unauthenticated(peer, method, "", "no credential",
                         "this broker has users: send 'authorization: Bearer <token>' metadata, "
                         "or a client certificate of a user");
}

std::optional<core::Error> Access::Deny(const Caller& caller, const Peer& peer,
                                        std::string_view method, Permission p,
                                        std::string_view object) {
  if (caller.user == nullptr || caller.user->May(p, object)) return std::nullopt;
  denied_.fetch_add(1, std::memory_order_relaxed);
  Audit("denied", caller, peer, method, object, security::PermissionName(p));
  return core::Error{core::Errc::kPermissionDenied, "user '" + caller.user->name + "' may not " +
                                                        security::PermissionName(p) + " '" +
                                                        std::string(object.substr(0, 255)) + "'"};
}

std::optional<core::Error> Access::Authorize(const Caller& caller, grpc::ServerContextBase* ctx,
                                             std::string_view method, Permission p,
                                             std::string_view object) {
  return Deny(caller, Peer{ctx, {}}, method, p, object);
}

std::optional<core::Error> Access::CheckHttp(std::string_view authorization, std::string_view peer,
                                             std::string_view method, Permission p,
                                             std::string_view object, Caller* caller) {
  if (!enabled()) return std::nullopt;
  const Peer from{nullptr, peer};
  if (authorization.empty()) {
    return Unauthenticated(from, method, object, "no credential",
                           "this broker has users: send 'Authorization: Bearer <token>'");
  }
  auto who = IdentifyBearer(*state(), authorization, from, method);
  if (!who.ok()) return who.error();
  if (auto denied = Deny(who.value(), from, method, p, object)) return denied;
  if (caller != nullptr) *caller = std::move(who.value());
  return std::nullopt;
}

std::optional<core::Error> Access::RequireAdmin(const Caller& caller, grpc::ServerContextBase* ctx,
                                                std::string_view method) {
  if (caller.user == nullptr || caller.user->admin) return std::nullopt;
  denied_.fetch_add(1, std::memory_order_relaxed);
  Audit("denied", caller, Peer{ctx, {}}, method, "", "admin");
  return core::Error{core::Errc::kPermissionDenied,
                     "user '" + caller.user->name + "' is not tagged admin"};
}

std::optional<core::Error> Access::Check(grpc::ServerContextBase* ctx, std::string_view method,
                                         Permission p, std::string_view object, Caller* caller) {
  if (!enabled()) return std::nullopt;
  auto who = Identify(ctx, method);
  if (!who.ok()) return who.error();
  if (auto denied = Authorize(who.value(), ctx, method, p, object)) return denied;
  if (caller != nullptr) *caller = std::move(who.value());
  return std::nullopt;
}

bool Access::Sees(const Caller& caller, std::string_view object) {
  return caller.user == nullptr || caller.user->admin || caller.user->Sees(object);
}

std::optional<core::Error> Access::Spend(const Caller& caller, grpc::ServerContextBase* ctx,
                                         std::string_view method, std::string_view object,
                                         uint64_t messages) {
  if (caller.user == nullptr) return std::nullopt;
  const double rate = RateOf(*caller.user);
  if (rate <= 0 || messages == 0) return std::nullopt;
  const std::shared_ptr<State> state = this->state();
  const auto it = state->buckets.find(caller.user->name);
  // Not there: the user was removed by a SIGHUP (its Produce stream ends
  // at the next Recheck).
  if (it == state->buckets.end()) return std::nullopt;
  Bucket& b = *it->second;
  const double capacity = Capacity(rate);
  {
    std::lock_guard lock(b.mu);
    const auto now = std::chrono::steady_clock::now();
    b.tokens =
        std::min(capacity, b.tokens + std::chrono::duration<double>(now - b.last).count() * rate);
    b.last = now;
    // A batch larger than the bucket can ever hold passes when the bucket is
    // full and drives it below zero: the wait that follows pays for it.
    const double need = std::min(double(messages), capacity);
    if (b.tokens >= need) {
      b.tokens -= double(messages);
      return std::nullopt;
    }
  }
  rate_limited_.fetch_add(1, std::memory_order_relaxed);
  Audit("rate_limited", caller, Peer{ctx, {}}, method, object, "");
  char limit[64];
  std::snprintf(limit, sizeof limit, "%g", rate);
  return core::Error{core::Errc::kRateLimited, "user '" + caller.user->name +
                                                   "' is over its rate of " + limit +
                                                   " messages/s: retry after a pause"};
}

std::optional<core::Error> Access::Recheck(Caller* caller, grpc::ServerContextBase* ctx,
                                           std::string_view method, Permission p,
                                           std::string_view object) {
  if (caller->user == nullptr || caller->generation == generation_.load()) return std::nullopt;
  // The stream's own credential again (its metadata and certificate last as
  // long as the call): a token removed from its user is refused, not only a
  // user removed.
  auto who = Identify(ctx, method);
  if (!who.ok()) return who.error();
  *caller = std::move(who.value());
  return Authorize(*caller, ctx, method, p, object);
}

double Access::RateOf(const security::User& user) const {
  return user.rate > 0 ? user.rate : double(options_.user_rate);
}

uint64_t Access::MaxQueues(const security::User& user) const {
  return user.max_queues > 0 ? user.max_queues : options_.user_max_queues;
}

std::optional<core::Error> Access::ReserveQueue(
    const Caller& caller, const std::function<bool(const std::string&)>& exists) {
  if (caller.user == nullptr) return std::nullopt;
  const uint64_t max = MaxQueues(*caller.user);
  if (max == 0) return std::nullopt;
  const std::string& name = caller.user->name;
  std::vector<std::string> mine;
  {
    std::lock_guard lock(quota_mu_);
    if (created_[name] < max) {
      ++created_[name];  // the slot is taken now: parallel creates cannot overshoot
      return std::nullopt;
    }
    // At the quota: drop queues deleted behind our back (the dashboard)
    // before refusing. At most `max` of them, checked without the lock.
    for (const auto& [queue, creator] : creator_) {
      if (creator == name) mine.push_back(queue);
    }
  }
  std::vector<std::string> gone;
  for (const std::string& q : mine) {
    if (!exists(q)) gone.push_back(q);
  }
  std::lock_guard lock(quota_mu_);
  for (const std::string& q : gone) {
    auto it = creator_.find(q);
    if (it != creator_.end() && it->second == name) {
      creator_.erase(it);
      --created_[name];
    }
  }
  if (created_[name] < max) {
    ++created_[name];
    return std::nullopt;
  }
  quota_refused_.fetch_add(1, std::memory_order_relaxed);
  return core::Error{core::Errc::kTooManyQueues, "user '" + name + "' has created " +
                                                     std::to_string(max) +
                                                     " queues, its max_queues: delete one first"};
}

void Access::Settle(const Caller& caller, const std::string& queue, bool created) {
  if (caller.user == nullptr || MaxQueues(*caller.user) == 0) return;
  std::lock_guard lock(quota_mu_);
  const std::string& name = caller.user->name;
  // A queue made is the slot's; otherwise (it existed, or the create failed)
  // the slot goes back.
  if (!created) {
    if (created_[name] > 0) --created_[name];
    return;
  }
  auto [it, fresh] = creator_.emplace(queue, name);
  if (!fresh) {
    // A stale entry (deleted behind our back, then made again): the queue is
    // this user's now, and the old owner's slot is free.
    if (created_[it->second] > 0) --created_[it->second];
    it->second = name;
  }
}

void Access::Deleted(const std::string& queue) {
  std::lock_guard lock(quota_mu_);
  auto it = creator_.find(queue);
  if (it == creator_.end()) return;
  --created_[it->second];
  creator_.erase(it);
}

void Access::AuditAction(const Caller& caller, grpc::ServerContextBase* ctx,
                         std::string_view method, std::string_view object) {
  if (caller.user == nullptr) return;
  Audit("configure", caller, Peer{ctx, {}}, method, object, "");
}

void Access::AuditAction(std::string_view user, std::string_view peer, std::string_view method,
                         std::string_view object) {
  Audit("configure", user, Peer{nullptr, peer}, method, object, "");
}

AccessCounters Access::counters() const {
  return {unauthenticated_.load(), denied_.load(), rate_limited_.load(), quota_refused_.load()};
}

void Access::Audit(std::string_view event, const Caller& caller, const Peer& peer,
                   std::string_view method, std::string_view object, std::string_view detail) {
  Audit(event, caller.user != nullptr ? std::string_view(caller.user->name) : std::string_view(),
        peer, method, object, detail);
}

void Access::Audit(std::string_view event, std::string_view user, const Peer& peer,
                   std::string_view method, std::string_view object, std::string_view detail) {
  if (!options_.audit) return;
  if (event != "configure") {
    const int64_t second = std::chrono::duration_cast<std::chrono::seconds>(
                               std::chrono::steady_clock::now().time_since_epoch())
                               .count();
    int64_t seen = audit_second_.load();
    if (seen != second && audit_second_.compare_exchange_strong(seen, second)) {
      audit_in_second_.store(0);
      if (const uint64_t dropped = audit_suppressed_.exchange(0); dropped > 0) {
        options_.audit("{\"audit\":\"suppressed\",\"count\":" + std::to_string(dropped) + "}");
      }
    }
    if (audit_in_second_.fetch_add(1) >= kAuditPerSecond) {
      audit_suppressed_.fetch_add(1);
      return;
    }
  }
  std::string line = "{\"audit\":";
  line += core::JsonString(event);
  line += ",\"user\":";
  if (!user.empty()) {
    line += core::JsonString(user);
  } else {
    line += "null";
  }
  line += ",\"method\":";
  line += core::JsonString(method);
  line += ",\"object\":";
  line += core::JsonString(object.substr(0, 255));
  if (!detail.empty()) {
    line += event == "denied" ? ",\"permission\":" : ",\"detail\":";
    line += core::JsonString(detail);
  }
  line += ",\"peer\":";
  line += core::JsonString(peer.str());
  line += "}";
  options_.audit(line);
}

}  // namespace basin::service
