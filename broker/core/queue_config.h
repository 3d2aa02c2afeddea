// What a queue is made with (its settings and the broker's limits) and what it
// reports (its stats): the values the service, the storage layer and the
// queue share, apart from the queue itself.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "broker/core/time.h"

namespace basin::core {

// Settings fixed when the queue is created.
struct QueueConfig {
  std::string name;
  uint64_t max_size = 0;  // 0 = unbounded
  Duration visibility_timeout{};
  uint32_t max_deliveries = 0;  // 0 = unlimited
  std::string dead_letter_queue;
  uint64_t max_bytes = 0;  // 0 = unbounded
  // Kept in the broker's data directory (a journal is attached): survives a
  // restart. See QueueJournal.
  bool durable = false;
  // How long a message whose lease ended without task_done (expired,
  // released without a delay of its own) waits before it is ready again:
  // entry min(deliveries, size) - 1, the last one repeating. Empty: at once.
  std::vector<Duration> retry_backoff;
  // Priority levels above 0 (RabbitMQ's x-max-priority): 0 = none, at most
  // kMaxPriority. A message's priority is capped at it.
  uint8_t max_priority = 0;
  // How long after its put a message expires unless it says otherwise
  // (MessageAttrs::expires_at); 0 = never.
  Duration message_ttl{};

  bool operator==(const QueueConfig&) const = default;
};

// The most a batch Get may ask for, in messages and in bytes: one answer is
// built under the queue's lock, so its size must not be the client's choice.
inline constexpr size_t kMaxGetMessages = 1'000;
inline constexpr uint64_t kMaxGetBytes = 4 << 20;
// The most messages one Put or Produce batch may carry: a batch is
// validated and admitted under the queue's lock.
inline constexpr size_t kMaxBatchMessages = 10'000;
// The longest dedup_id a put may carry (producer ids have the same cap): the
// ids are kept for the dedup window.
inline constexpr size_t kMaxDedupIdBytes = 128;
// How far ahead a message may be scheduled (deliver_after, deliver_at): a
// delayed message is kept, and holds its part of the log, until then.
inline constexpr Duration kMaxDelay = std::chrono::hours(24 * 30);
// "30 days": how a limit in days is named in error messages.
inline std::string DaysText(Duration limit) {
  return std::to_string(limit / std::chrono::hours(24)) + " days";
}

// The highest priority (and max_priority) there is.
inline constexpr uint8_t kMaxPriority = 10;
// The longest a message may live (message_ttl, expires_after).
inline constexpr Duration kMaxTtl = std::chrono::hours(24 * 365);
// The longest ordering group name.
inline constexpr size_t kMaxGroupBytes = 128;
// The most entries a queue's retry_backoff may have.
inline constexpr size_t kMaxRetryBackoff = 32;
// The most delayed messages one timer pass makes ready: any number may come
// due at once, and each pass holds the queue's lock.
inline constexpr size_t kDueBatch = 10'000;

// Broker-wide limits each queue enforces.
struct QueueLimits {
  uint64_t max_message_bytes = 1 << 20;
  size_t max_waiters = 100'000;
  Duration max_lease = std::chrono::hours(12);
  // How long a put's dedup_id is remembered, and how many are kept at most
  // (the oldest are forgotten first).
  Duration dedup_window = std::chrono::minutes(2);
  size_t max_dedup_ids = 1'000'000;
  // Producers (idempotent Produce streams) a queue remembers at once.
  size_t max_producers = 10'000;
};

// One streaming consumer, as stats show it.
struct ConsumerStats {
  uint64_t id = 0;
  uint32_t prefetch = 0;
  uint64_t in_flight = 0;  // delivered and not yet acked or released
  uint64_t delivered = 0;
  uint64_t acked = 0;
};

struct QueueStats {
  uint64_t size = 0;
  uint64_t bytes = 0;
  bool full = false;
  bool empty = true;
  uint64_t unfinished = 0;
  uint64_t in_flight = 0;
  uint64_t delayed = 0;        // put with a delay that has not passed yet
  uint64_t groups = 0;         // ordering groups with a message in the queue
  uint64_t active_groups = 0;  // of those, with their next message handed out or retrying
  uint64_t waiting_getters = 0;
  uint64_t waiting_putters = 0;
  uint64_t waiting_joiners = 0;
  uint64_t total_put = 0;
  uint64_t total_delivered = 0;
  uint64_t total_done = 0;
  uint64_t total_redelivered = 0;
  uint64_t total_dead_lettered = 0;
  uint64_t total_rejected = 0;  // routed copies refused (Offer)
  uint64_t total_expired = 0;   // dead-lettered (or dropped) by their TTL
  bool closed = false;
  std::vector<ConsumerStats> consumers;
};

}  // namespace basin::core
