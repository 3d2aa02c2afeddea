// What the soak workers share (workers.cc, raw_workers.cc, child_workers.cc):
// a worker's seeded generator and ids, picking queues, pauses that shape the
// load, and recording a delivery in the Ledger.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "basin/client.h"
#include "workers.h"

namespace basin::soak {

inline constexpr const char* kOriginalQueueHeader = "basin-original-queue";

// One worker's state: its slot (the top byte of its ids), its generator, and
// a fresh incarnation (the middle bits of its ids) per session.
struct Worker {
  uint32_t index;
  Rng rng;
  uint32_t next_incarnation = 0;
  uint32_t NextIncarnation() { return next_incarnation++; }
};

// Index in kQueues, or -1.
int QueueIndex(std::string_view name);
int AnyQueue(Rng& rng);
// One that producers put to (not a dead-letter queue).
int ProducibleQueue(Rng& rng);
// Load shaping: with probability `p`, a pause of 1 to `max_ms` ms.
void MaybePause(Rng& rng, double p, int max_ms);

// A dead letter must name the queue it came from: what is wrong, if anything,
// with a delivery from queue `q` carrying `original` (null if absent).
std::optional<std::string> DeadLetterProblem(int q, const std::string* original);

template <typename HeaderMap>
const std::string* FindHeader(const HeaderMap& headers, const std::string& key) {
  const auto it = headers.find(key);
  return it == headers.end() ? nullptr : &it->second;
}

// Records a delivery from queue `q` in the Ledger; false if its payload is
// wrong.
bool Record(SoakContext& ctx, int q, const Message& m);

// The worker kinds implemented outside workers.cc.
void RawWorker(SoakContext& ctx, Worker& w);
void ChildWorker(SoakContext& ctx, Worker& w, bool producer);

}  // namespace basin::soak
