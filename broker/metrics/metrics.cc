#include "broker/metrics/metrics.h"

#include <prometheus/text_serializer.h>

namespace basin::metrics {

std::string Metrics::Render() const {
  auto families = collector_.Collect();
  auto counted = registry_->Collect();
  families.insert(families.end(), std::make_move_iterator(counted.begin()),
                  std::make_move_iterator(counted.end()));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace basin::metrics
