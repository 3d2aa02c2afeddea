// Everything /metrics serves, rendered by prometheus-cpp's TextSerializer:
//   - series read from a BrokerSnapshot (queues, topics, memory), storage's
//     counters and /proc (BrokerCollector);
//   - RPC calls and durations, counted lock-free as calls end (RpcMetrics);
//   - a prometheus::Registry for what is counted at a low rate: HTTP requests
//     to this listener, and the build's identity.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>
#include <string_view>

#include "broker/metrics/broker_collector.h"
#include "broker/metrics/broker_snapshot.h"
#include "broker/metrics/rpc_metrics.h"

namespace basin::metrics {

class Metrics {
 public:
  Metrics(std::shared_ptr<const storage::StorageCounters> storage, CollectorOptions options,
          const std::vector<std::string>& rpc_methods);

  RpcMetrics& rpc() { return rpc_; }
  // One request to the HTTP listener: `route` is one of a fixed set of
  // paths (never the client's), `status` its answer.
  void CountHttp(std::string_view route, unsigned status);
  // The Prometheus text exposition format, version 0.0.4.
  std::string Render(const BrokerSnapshot& snapshot) const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& http_requests_;
  RpcMetrics rpc_;
  BrokerCollector collector_;
};

}  // namespace basin::metrics
