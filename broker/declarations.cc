#include "broker/declarations.h"

#include <spdlog/spdlog.h>

namespace basin {

bool ApplyDeclarations(const Config& config, core::Broker* broker) {
  size_t created = 0, bound = 0;
  for (const DeclaredQueue& q : config.queues) {
    auto made = broker->CreateQueue(q.config);
    if (!made.ok()) {
      spdlog::error("{}: cannot declare queue '{}': {}", q.where, q.config.name,
                    made.error().message);
      return false;
    }
    created += made.value().created ? 1 : 0;
  }
  for (const DeclaredBinding& b : config.bindings) {
    auto made = broker->BindQueue(b.pattern, b.queue);
    if (!made.ok()) {
      spdlog::error("{}: cannot bind '{}' to queue '{}': {}", b.where, b.pattern, b.queue,
                    made.error().message);
      return false;
    }
    bound += made.value() ? 1 : 0;
  }
  if (!config.queues.empty() || !config.bindings.empty()) {
    spdlog::info("{}: {} queues declared ({} created), {} bindings ({} new)", config.config_file,
                 config.queues.size(), created, config.bindings.size(), bound);
  }
  return true;
}

}  // namespace basin
