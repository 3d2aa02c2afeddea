#include "broker/metrics/rpc_metrics.h"

#include <google/protobuf/descriptor.h>

#include "broker/core/latency_histogram.h"

namespace basin::metrics {
namespace {

const char* const kCodeNames[] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

}  // namespace

RpcMetrics::RpcMetrics(prometheus::Registry& registry, const std::vector<std::string>& methods)
    : calls_(prometheus::BuildCounter()
                 .Name("basin_rpc_calls_total")
                 .Help("gRPC calls finished, by method and status code")
                 .Register(registry)),
      duration_(prometheus::BuildHistogram()
                    .Name("basin_rpc_duration_seconds")
                    .Help("Time from a call's start to its status (a stream's whole life), by "
                          "method and status code")
                    .Register(registry)) {
  for (const std::string& name : methods) {
    if (index_.count(name) != 0) continue;
    methods_.push_back(std::make_unique<Method>());
    methods_.back()->name = name;
    index_.emplace(methods_.back()->name, methods_.size() - 1);
  }
  methods_.push_back(std::make_unique<Method>());
  methods_.back()->name = "other";
}

RpcMetrics::Cell& RpcMetrics::CellOf(size_t method, size_t code) {
  Cell& cell = methods_[method]->cells[code];
  if (cell.duration.load(std::memory_order_acquire) != nullptr) return cell;
  std::lock_guard lock(mu_);
  if (cell.duration.load(std::memory_order_relaxed) == nullptr) {
    const prometheus::Labels labels{{"method", methods_[method]->name}, {"code", kCodeNames[code]}};
    cell.calls.store(&calls_.Add(labels), std::memory_order_relaxed);
    cell.duration.store(&duration_.Add(labels, prometheus::Histogram::BucketBoundaries(
                                                   core::LatencyHistogram::kBounds.begin(),
                                                   core::LatencyHistogram::kBounds.end())),
                        std::memory_order_release);
  }
  return cell;
}

void RpcMetrics::Record(const char* method, grpc::StatusCode code,
                        std::chrono::nanoseconds duration) {
  const auto found = method != nullptr ? index_.find(method) : index_.end();
  const size_t m = found != index_.end() ? found->second : methods_.size() - 1;
  const auto c = static_cast<size_t>(code);
  Cell& cell = CellOf(m, c < kCodes ? c : static_cast<size_t>(grpc::StatusCode::UNKNOWN));
  cell.calls.load(std::memory_order_relaxed)->Increment();
  cell.duration.load(std::memory_order_relaxed)
      ->Observe(std::chrono::duration<double>(duration).count());
}

std::vector<std::string> RpcMetrics::MethodsOf(const std::vector<std::string>& services) {
  std::vector<std::string> out;
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  for (const std::string& service : services) {
    const auto* s = pool->FindServiceByName(service);
    if (s == nullptr) continue;
    for (int i = 0; i < s->method_count(); ++i) {
      out.push_back("/" + service + "/" + s->method(i)->name());
    }
  }
  return out;
}

}  // namespace basin::metrics
