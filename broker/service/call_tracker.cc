#include "broker/service/call_tracker.h"

#include <string_view>

namespace basin::service {

using grpc::experimental::InterceptionHookPoints;

// One per call: made with it, destroyed when gRPC is done with it. The call
// is told to the observer as its status is sent, so that a client that has
// its answer finds it counted; one that sends none (the client went away) is
// told when the call is destroyed.
class TrackedCall final : public grpc::experimental::Interceptor {
 public:
  TrackedCall(CallTracker* tracker, const char* method)
      : tracker_(tracker), method_(method), counted_(tracker_->Started(method)) {}
  ~TrackedCall() override {
    if (!told_) Tell(grpc::StatusCode::CANCELLED);
    if (counted_) tracker_->Finished();
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS) && !told_) {
      Tell(methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  void Tell(grpc::StatusCode code) {
    told_ = true;
    tracker_->Observe(method_, code, std::chrono::steady_clock::now() - start_);
  }

  CallTracker* const tracker_;
  const char* const method_;
  const bool counted_;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  bool told_ = false;
};

namespace {

class Factory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit Factory(CallTracker* tracker) : tracker_(tracker) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new TrackedCall(tracker_, info->method());
  }

 private:
  CallTracker* const tracker_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> CallTracker::Factory() {
  return std::make_unique<service::Factory>(this);
}

bool CallTracker::Started(const char* method) {
  static constexpr std::string_view kOwn = "/basin.v1.";
  if (draining_.load() || method == nullptr ||
      std::string_view(method).substr(0, kOwn.size()) != kOwn) {
    return false;
  }
  active_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void CallTracker::Observe(const char* method, grpc::StatusCode code,
                          std::chrono::nanoseconds took) {
  if (observer_) observer_(method, code, took);
}

void CallTracker::Finished() {
  if (active_.fetch_sub(1) == 1 && draining_.load()) {
    // Through the mutex: a waiter between its check and its sleep cannot
    // miss this.
    std::lock_guard lock(mu_);
    idle_.notify_all();
  }
}

bool CallTracker::WaitIdle(std::chrono::steady_clock::time_point deadline) {
  draining_.store(true);
  std::unique_lock lock(mu_);
  return idle_.wait_until(lock, deadline, [this] { return active_.load() == 0; });
}

}  // namespace basin::service
