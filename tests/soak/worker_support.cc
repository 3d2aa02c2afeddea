#include "worker_support.h"

#include <thread>

#include "queues.h"

namespace basin::soak {

int QueueIndex(std::string_view name) {
  for (size_t i = 0; i < kQueues.size(); ++i) {
    if (name == kQueues[i].name) return static_cast<int>(i);
  }
  return -1;
}

int AnyQueue(Rng& rng) { return static_cast<int>(rng.Uniform(0, kQueues.size() - 1)); }
int ProducibleQueue(Rng& rng) {
  return kProducible[static_cast<size_t>(rng.Uniform(0, kProducible.size() - 1))];
}

void MaybePause(Rng& rng, double p, int max_ms) {
  if (rng.Chance(p)) std::this_thread::sleep_for(rng.Ms(1, max_ms));
}

std::optional<std::string> DeadLetterProblem(int q, const std::string* original) {
  if (!kQueues[static_cast<size_t>(q)].is_dead_letter_queue) return std::nullopt;
  if (original == nullptr) {
    return std::string("a dead letter in ") + kQueues[static_cast<size_t>(q)].name + " has no " +
           kOriginalQueueHeader + " header";
  }
  const int from = QueueIndex(*original);
  if (from < 0 || kQueues[static_cast<size_t>(from)].dead_letter != q) {
    return std::string("a dead letter in ") + kQueues[static_cast<size_t>(q)].name +
           " names original queue '" + *original + "'";
  }
  return std::nullopt;
}

bool Record(SoakContext& ctx, int q, const Message& m) {
  if (auto p = DeadLetterProblem(q, FindHeader(m.headers(), kOriginalQueueHeader)))
    ctx.ledger->Fail(*p);
  return ctx.ledger->Received(IdOf(m.headers()), q, m.delivery_count(), m.payload());
}

}  // namespace basin::soak
