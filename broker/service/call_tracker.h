// Every gRPC call the server runs, seen by one interceptor: how many basin.v1
// calls are in progress (a draining broker waits for those that started
// before the drain to end, rather than for clients to hang up, which gRPC's
// Shutdown would wait for) and, when metrics are served, each call's method,
// status and duration.
#pragma once

#include <grpcpp/support/server_interceptor.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>

#include "broker/core/lock_rank.h"

namespace basin::service {

class CallTracker {
 public:
  // Told of each call as its status is sent (a call the client abandoned,
  // which sends none, as CANCELLED when it ends); may be empty. Runs on the
  // thread that ends the call.
  using Observer =
      std::function<void(const char* method, grpc::StatusCode code, std::chrono::nanoseconds)>;

  explicit CallTracker(Observer observer = nullptr) : observer_(std::move(observer)) {}

  // For ServerBuilder::experimental().SetInterceptorCreators; the tracker
  // must outlive the server.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> Factory();

  // basin.v1 calls in progress that started before the drain (all of them
  // before it). gRPC's own health and reflection calls are not counted: a
  // health Watch stream lasts as long as its client wants.
  int64_t active() const { return active_.load(); }
  // Starts the drain: calls from now on are not waited for. Then waits until
  // the calls counted have ended or `deadline` passes; true if they have.
  bool WaitIdle(std::chrono::steady_clock::time_point deadline);

 private:
  friend class TrackedCall;
  // True if the call is counted (a basin.v1 call, before the drain).
  bool Started(const char* method);
  void Observe(const char* method, grpc::StatusCode code, std::chrono::nanoseconds took);
  void Finished();

  const Observer observer_;
  std::atomic<int64_t> active_{0};
  std::atomic<bool> draining_{false};  // WaitIdle has begun: count no more, wake it at zero
  RankedMutex<LockRank::kCallTracker> mu_;
  std::condition_variable_any idle_;
};

}  // namespace basin::service
