// Authentication and authorization of calls (docs/security.md): who a call is
// from (its bearer token, else its client certificate), whether that user's
// permissions cover the call's queue or topic, the user's message rate and
// queue quota, and the audit line of every refusal and every configure
// action. With no users configured every check passes and costs one atomic
// load, as before this existed.
//
// Unary calls are checked once, streams once when they open (their queue or
// topics are known at the first request). Token lookups are cached: the
// salted hash is computed once per token and users file, not once per call.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "broker/core/errc.h"
#include "broker/core/lock_rank.h"
#include "broker/security/users.h"

namespace basin::service {

using security::Permission;

struct AccessOptions {
  uint64_t user_rate = 0;        // --user-rate: messages/s; 0 none
  uint64_t user_max_queues = 0;  // --user-max-queues; 0 none
  // Where audit lines go: one JSON object each (main sends them to the log).
  std::function<void(const std::string& json)> audit;
};

// Who a call is from. Null user: authentication is off (no users).
struct Caller {
  std::shared_ptr<const security::User> user;
  uint64_t generation = 0;  // of the users file the user was found in
};

// Refusals since start, for /metrics and GetServerInfo.
struct AccessCounters {
  uint64_t unauthenticated = 0, permission_denied = 0, rate_limited = 0, quota_refused = 0;
};

class Access {
 public:
  Access(std::shared_ptr<const security::UserTable> users, AccessOptions options);
  ~Access();

  // Whether users are configured (and so every call is checked).
  bool enabled() const { return enabled_.load(std::memory_order_acquire); }
  // SIGHUP: the users file read again. Calls already running keep the user
  // they started with; token caches and rate buckets start afresh.
  void Replace(std::shared_ptr<const security::UserTable> users);
  size_t users() const;

  // Who the call is from; kUnauthenticated (audited) if users are configured
  // and neither the token nor the client certificate names one.
  core::Result<Caller> Identify(grpc::ServerContextBase* ctx, std::string_view method);
  // kPermissionDenied (audited) unless the caller may. Checks names only, so
  // a refusal says nothing of whether the object exists.
  std::optional<core::Error> Authorize(const Caller& caller, grpc::ServerContextBase* ctx,
                                       std::string_view method, Permission p,
                                       std::string_view object);
  // kPermissionDenied unless the caller has the admin tag.
  std::optional<core::Error> RequireAdmin(const Caller& caller, grpc::ServerContextBase* ctx,
                                          std::string_view method);
  // Identify and Authorize at once: a unary call's whole check. Fills *caller.
  std::optional<core::Error> Check(grpc::ServerContextBase* ctx, std::string_view method,
                                   Permission p, std::string_view object, Caller* caller = nullptr);
  // Check for the HTTP listener's queue actions: `authorization` is the
  // Authorization header ("Bearer TOKEN"), `peer` the client's address.
  std::optional<core::Error> CheckHttp(std::string_view authorization, std::string_view peer,
                                       std::string_view method, Permission p,
                                       std::string_view object, Caller* caller = nullptr);
  // Whether the caller's user has a queue quota (max_queues or --user-max-queues).
  bool HasQuota(const Caller& caller) const {
    return caller.user != nullptr && MaxQueues(*caller.user) > 0;
  }
  // Whether a listing shows `object` to the caller: admin, or any permission.
  static bool Sees(const Caller& caller, std::string_view object);

  // For a long stream, at each request: if the users file changed since the
  // caller was identified, identifies the call again from its own credential
  // (kUnauthenticated if the token or user is gone) and checks `p` on
  // `object` again. One atomic load when nothing changed.
  std::optional<core::Error> Recheck(Caller* caller, grpc::ServerContextBase* ctx,
                                     std::string_view method, Permission p,
                                     std::string_view object);
  // Takes `messages` from the caller's rate; kRateLimited when they are not
  // there (then nothing is taken).
  std::optional<core::Error> Spend(const Caller& caller, grpc::ServerContextBase* ctx,
                                   std::string_view method, std::string_view object,
                                   uint64_t messages);

  // The queue quota. Before CreateQueue: ReserveQueue takes a slot, or
  // answers kTooManyQueues when the caller has its max_queues already. After
  // it, Settle() with whether a queue was made (the slot is the queue's, or
  // is given back). After a DeleteQueue: Deleted(). Queues deleted otherwise
  // are noticed when their creator next reaches its quota.
  std::optional<core::Error> ReserveQueue(const Caller& caller,
                                          const std::function<bool(const std::string&)>& exists);
  void Settle(const Caller& caller, const std::string& queue, bool created);
  void Deleted(const std::string& queue);

  // The audit line of a configure action that succeeded.
  void AuditAction(const Caller& caller, grpc::ServerContextBase* ctx, std::string_view method,
                   std::string_view object);
  // The same for an HTTP client at `peer` (`user` empty: none known).
  void AuditAction(std::string_view user, std::string_view peer, std::string_view method,
                   std::string_view object);

  AccessCounters counters() const;

 private:
  struct State;
  struct Bucket;
  // Where a call comes from, for the audit line: a gRPC call's context
  // (whose peer() allocates, so it is asked only when a line is written), or
  // an HTTP client's address.
  struct Peer {
    grpc::ServerContextBase* ctx = nullptr;
    std::string_view text;
    std::string str() const { return ctx != nullptr ? ctx->peer() : std::string(text); }
  };
  std::shared_ptr<State> state() const;
  core::Result<Caller> IdentifyBearer(State& state, std::string_view value, const Peer& peer,
                                      std::string_view method);
  std::optional<core::Error> Deny(const Caller& caller, const Peer& peer, std::string_view method,
                                  Permission p, std::string_view object);
  void Audit(std::string_view event, const Caller& caller, const Peer& peer,
             std::string_view method, std::string_view object, std::string_view detail);
  void Audit(std::string_view event, std::string_view user, const Peer& peer,
             std::string_view method, std::string_view object, std::string_view detail);
  // A refusal for want of a credential: counted, audited, and the error.
  core::Error Unauthenticated(const Peer& peer, std::string_view method, std::string_view object,
                              std::string_view detail, std::string message);
  double RateOf(const security::User& user) const;  // its rate, or --user-rate
  uint64_t MaxQueues(const security::User& user) const;

  const AccessOptions options_;
  std::atomic<bool> enabled_{false};
  std::atomic<uint64_t> generation_{0};
  mutable RankedMutex<LockRank::kAccessState> state_mu_;  // guards state_ (the pointer)
  std::shared_ptr<State> state_;

  // The queue quota: who created which queue, and how many each user has.
  RankedMutex<LockRank::kAccessQuota> quota_mu_;
  std::unordered_map<std::string, std::string> creator_;  // queue -> user
  std::map<std::string, uint64_t> created_;               // user -> queues, with slots reserved

  std::atomic<uint64_t> unauthenticated_{0}, denied_{0}, rate_limited_{0}, quota_refused_{0};
  // Refusals are audited at most kAuditPerSecond a second: a client that
  // hammers the broker with bad calls must not fill the disk.
  std::atomic<int64_t> audit_second_{0};
  std::atomic<uint64_t> audit_in_second_{0}, audit_suppressed_{0};
};

}  // namespace basin::service
