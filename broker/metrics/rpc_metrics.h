// Per RPC method and status code: calls (basin_rpc_calls_total) and their
// duration (basin_rpc_duration_seconds; for a stream, its whole life), told
// by the server's CallTracker (broker/service/call_tracker.h) as each call's
// status is sent. Lock-free: one relaxed atomic add per bucket, count and sum.
//
// Labels are bounded: the method label is one of the methods the server
// registered (anything else a client names is "other") and the code one of
// gRPC's 17. A call the client abandoned, which sends no status, counts as
// CANCELLED.
#pragma once

#include <grpcpp/support/status.h>
#include <prometheus/metric_family.h>

#include <array>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "broker/core/latency_histogram.h"

namespace basin::metrics {

class RpcMetrics {
 public:
  // `methods`: full names ("/basin.v1.QueueService/Put") the server serves.
  explicit RpcMetrics(const std::vector<std::string>& methods);

  void Record(const char* method, grpc::StatusCode code, std::chrono::nanoseconds duration);
  // Appends basin_rpc_calls_total and basin_rpc_duration_seconds, with a
  // series for each method and code seen at least once.
  void Collect(std::vector<prometheus::MetricFamily>* out) const;

  // The full method names of `services` ("basin.v1.QueueService"), from
  // the generated descriptor pool; services not linked in are skipped.
  static std::vector<std::string> MethodsOf(const std::vector<std::string>& services);

 private:
  static constexpr size_t kCodes = 17;
  struct Method {
    std::string name;
    std::array<core::LatencyHistogram, kCodes> codes;
  };
  // Fixed after construction, so read without a lock; the last is "other".
  std::vector<std::unique_ptr<Method>> methods_;
  std::unordered_map<std::string_view, size_t> index_;
};

}  // namespace basin::metrics
