// Every gRPC call the server runs, seen by one interceptor: how many are in
// progress (a draining broker waits for that to reach zero rather than for
// clients to hang up, which gRPC's Shutdown would wait for) and, when metrics
// are served, each call's method, status and duration.
#pragma once

#include <grpcpp/support/server_interceptor.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>

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

  int64_t active() const { return active_.load(); }
  // Waits until no call is in progress or `deadline` passes; true if none is.
  bool WaitIdle(std::chrono::steady_clock::time_point deadline);

 private:
  friend class TrackedCall;
  void Started() { active_.fetch_add(1, std::memory_order_relaxed); }
  void Observe(const char* method, grpc::StatusCode code, std::chrono::nanoseconds took);
  void Finished();

  const Observer observer_;
  std::atomic<int64_t> active_{0};
  std::atomic<bool> waiting_{false};  // WaitIdle is waiting: wake it at zero
  std::mutex mu_;
  std::condition_variable idle_;
};

}  // namespace basin::service
