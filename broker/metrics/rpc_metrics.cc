#include "broker/metrics/rpc_metrics.h"

#include <google/protobuf/descriptor.h>

#include "broker/metrics/histogram_metric.h"

namespace basin::metrics {
namespace {

const char* const kCodeNames[] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

}  // namespace

RpcMetrics::RpcMetrics(const std::vector<std::string>& methods) {
  for (const std::string& name : methods) {
    if (index_.count(name) != 0) continue;
    methods_.push_back(std::make_unique<Method>());
    methods_.back()->name = name;
    index_.emplace(methods_.back()->name, methods_.size() - 1);
  }
  methods_.push_back(std::make_unique<Method>());
  methods_.back()->name = "other";
}

void RpcMetrics::Record(const char* method, grpc::StatusCode code,
                        std::chrono::nanoseconds duration) {
  const auto found = method != nullptr ? index_.find(method) : index_.end();
  const size_t m = found != index_.end() ? found->second : methods_.size() - 1;
  const auto c = static_cast<size_t>(code);
  methods_[m]->codes[c < kCodes ? c : static_cast<size_t>(grpc::StatusCode::UNKNOWN)].Observe(
      duration);
}

void RpcMetrics::Collect(std::vector<prometheus::MetricFamily>* out) const {
  prometheus::MetricFamily calls{"basin_rpc_calls_total",
                                 "gRPC calls finished, by method and status code",
                                 prometheus::MetricType::Counter,
                                 {}};
  prometheus::MetricFamily durations{
      "basin_rpc_duration_seconds",
      "Time from a call's start to its status (a stream's whole life), by method and status code",
      prometheus::MetricType::Histogram,
      {}};
  for (const auto& method : methods_) {
    for (size_t c = 0; c < kCodes; ++c) {
      const auto h = method->codes[c].Read();
      if (h.count == 0) continue;
      std::vector<prometheus::ClientMetric::Label> labels{{"method", method->name},
                                                          {"code", kCodeNames[c]}};
      prometheus::ClientMetric count;
      count.label = labels;
      count.counter.value = static_cast<double>(h.count);
      calls.metric.push_back(std::move(count));
      durations.metric.push_back(HistogramMetric(h, std::move(labels)));
    }
  }
  out->push_back(std::move(calls));
  out->push_back(std::move(durations));
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
