// The queues the soak test runs against: in-memory and durable, unbounded,
// bounded tight enough that producers block on them, bounded in bytes, and
// two with a delivery limit and a dead-letter queue. Dead-letter queues come
// before the queues that name them (they must exist first).
#pragma once

#include <array>
#include <cstdint>

namespace basin::soak {

struct QueueSpec {
  const char* name;
  uint64_t max_size;
  uint64_t max_bytes;
  bool durable;
  uint32_t max_deliveries;
  int dead_letter;  // index in kQueues, or -1
  int visibility_ms;
  bool is_dead_letter_queue;  // nothing is put in it but dead letters
};

inline constexpr std::array<QueueSpec, 8> kQueues = {{
    {"soak.mem.open", 0, 0, false, 0, -1, 2000, false},
    {"soak.mem.small", 20, 0, false, 0, -1, 2000, false},
    {"soak.mem.dead", 0, 0, false, 0, -1, 2000, true},
    {"soak.mem.retry", 50, 0, false, 2, 2, 1000, false},
    {"soak.dur.open", 0, 4u << 20, true, 0, -1, 2000, false},
    {"soak.dur.small", 40, 0, true, 0, -1, 2000, false},
    {"soak.dur.dead", 0, 0, true, 0, -1, 2000, true},
    {"soak.dur.retry", 0, 0, true, 3, 6, 1000, false},
}};

// Queues producers put to (not the dead-letter queues).
inline constexpr std::array<int, 6> kProducible = {0, 1, 3, 4, 5, 7};

}  // namespace basin::soak
