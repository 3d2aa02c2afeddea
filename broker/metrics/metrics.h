// Everything /metrics serves: the registry of series counted as they happen
// (RPC calls) and the collector of series read at scrape time (queues,
// topics, storage, process), rendered by prometheus-cpp's TextSerializer.
#pragma once

#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "broker/metrics/broker_collector.h"
#include "broker/metrics/rpc_metrics.h"

namespace basin::metrics {

class Metrics {
 public:
  Metrics(const core::Broker* broker, std::shared_ptr<const storage::StorageCounters> storage,
          CollectorOptions options, const std::vector<std::string>& rpc_methods)
      : registry_(std::make_shared<prometheus::Registry>()),
        rpc_(*registry_, rpc_methods),
        collector_(broker, std::move(storage), options) {}

  RpcMetrics& rpc() { return rpc_; }
  // The Prometheus text exposition format, version 0.0.4.
  std::string Render() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  RpcMetrics rpc_;
  BrokerCollector collector_;
};

}  // namespace basin::metrics
