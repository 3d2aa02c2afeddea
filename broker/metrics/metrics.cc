#include "broker/metrics/metrics.h"

#include <prometheus/gauge.h>
#include <prometheus/text_serializer.h>

#include "broker/build_info.h"

namespace basin::metrics {

Metrics::Metrics(std::shared_ptr<const storage::StorageCounters> storage, CollectorOptions options,
                 const std::vector<std::string>& rpc_methods)
    : registry_(std::make_shared<prometheus::Registry>()),
      http_requests_(prometheus::BuildCounter()
                         .Name("basin_http_requests_total")
                         .Help("Requests to the HTTP listener, by route and status")
                         .Register(*registry_)),
      rpc_(rpc_methods),
      collector_(std::move(storage), options) {
  prometheus::BuildGauge()
      .Name("basin_build_info")
      .Help("Always 1; the labels say which basind this is")
      .Register(*registry_)
      .Add({{"version", std::string(BuildVersion())},
            {"revision", std::string(BuildRevision())},
            {"build_type", std::string(BuildType())}})
      .Set(1);
}

void Metrics::CountHttp(std::string_view route, unsigned status) {
  http_requests_.Add({{"route", std::string(route)}, {"code", std::to_string(status)}}).Increment();
}

std::string Metrics::Render(const BrokerSnapshot& snapshot) const {
  auto families = collector_.Collect(snapshot);
  rpc_.Collect(&families);
  auto counted = registry_->Collect();
  families.insert(families.end(), std::make_move_iterator(counted.begin()),
                  std::make_move_iterator(counted.end()));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace basin::metrics
