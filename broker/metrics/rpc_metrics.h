// Per RPC method and status code: calls (basin_rpc_calls_total) and their
// duration (basin_rpc_duration_seconds; for a stream, its whole life), told
// by the server's CallTracker (broker/service/call_tracker.h).
//
// Labels are bounded: the method label is one of the methods the server
// registered (anything else a client names is "other") and the code one of
// gRPC's 17. A call the client abandoned, which sends no status, counts as
// CANCELLED.
#pragma once

#include <grpcpp/support/status.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace basin::metrics {

class RpcMetrics {
 public:
  // `methods`: full names ("/basin.v1.QueueService/Put") the server serves.
  RpcMetrics(prometheus::Registry& registry, const std::vector<std::string>& methods);

  void Record(const char* method, grpc::StatusCode code, std::chrono::nanoseconds duration);

  // The full method names of `services` ("basin.v1.QueueService"), from
  // the generated descriptor pool; services not linked in are skipped.
  static std::vector<std::string> MethodsOf(const std::vector<std::string>& services);

 private:
  static constexpr size_t kCodes = 17;
  struct Cell {
    std::atomic<prometheus::Counter*> calls{nullptr};
    std::atomic<prometheus::Histogram*> duration{nullptr};
  };
  struct Method {
    std::string name;
    std::array<Cell, kCodes> cells;
  };
  // With a cell's series made on first use (under mu_).
  Cell& CellOf(size_t method, size_t code);

  prometheus::Family<prometheus::Counter>& calls_;
  prometheus::Family<prometheus::Histogram>& duration_;
  // Fixed after construction, so read without a lock; the last is "other".
  std::vector<std::unique_ptr<Method>> methods_;
  std::unordered_map<std::string_view, size_t> index_;
  std::mutex mu_;
};

}  // namespace basin::metrics
