#include "ledger.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <iostream>

namespace basin::soak {
namespace {

// One entry per message id:
//   bits 0-2   queue it was put in        bit 3  queue known
//   bit 4      sent                       bit 5  confirmed
//   bit 6      refused                    bit 7  seen in a dead-letter queue
//   bits 8-15  deliveries (saturating)
//   bits 16-23 delivery count at which it was finished in its queue (0: not)
//   bits 24-31 the same, in the dead-letter queue
constexpr uint32_t kQueueMask = 0x7;
constexpr uint32_t kQueueKnown = 1u << 3;
constexpr uint32_t kSent = 1u << 4;
constexpr uint32_t kConfirmed = 1u << 5;
constexpr uint32_t kRefused = 1u << 6;
constexpr uint32_t kSeenDlq = 1u << 7;
constexpr int kDeliveriesShift = 8;
constexpr int kFinishedShift = 16;
constexpr int kFinishedDlqShift = 24;

uint32_t Field(uint32_t e, int shift) { return (e >> shift) & 0xFF; }
void SetField(uint32_t& e, int shift, uint32_t v) {
  e = (e & ~(0xFFu << shift)) | (std::min<uint32_t>(v, 0xFF) << shift);
}

uint64_t Mix(uint64_t x) {  // splitmix64
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

std::string IdText(uint64_t id) {
  return std::to_string((id >> 56) - 1) + "/" + std::to_string((id >> 32) & 0xFFFFFF) + "/" +
         std::to_string(id & 0xFFFFFFFF);
}

}  // namespace

size_t PayloadSize(uint64_t id) {
  if ((id >> 56) == kWarmUpWorker + 1) return 0;
  const uint64_t h = Mix(id ^ 0x5EED5EED5EEDull);
  const uint64_t r = h % 100;
  const uint64_t x = h >> 8;
  if (r < 10) return 0;
  if (r < 70) return 1 + x % 256;
  if (r < 95) return 257 + x % (4096 - 256);
  return 4097 + x % (65536 - 4096);
}

std::string MakePayload(uint64_t id) {
  std::string p(PayloadSize(id), '\0');
  for (size_t i = 0; i < p.size(); i += 8) {
    const uint64_t w = Mix(id * 0x10001 + i);
    std::memcpy(p.data() + i, &w, std::min<size_t>(8, p.size() - i));
  }
  return p;
}

bool PayloadMatches(uint64_t id, std::string_view payload) {
  if (payload.size() != PayloadSize(id)) return false;
  for (size_t i = 0; i < payload.size(); i += 8) {
    const uint64_t w = Mix(id * 0x10001 + i);
    if (std::memcmp(payload.data() + i, &w, std::min<size_t>(8, payload.size() - i)) != 0) {
      return false;
    }
  }
  return true;
}

Headers IdHeaders(uint64_t id) { return {{kIdHeader, std::to_string(id)}}; }

uint64_t ParseId(std::string_view text) {
  uint64_t id = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (ec != std::errc() || end != text.data() + text.size()) return 0;
  return id;
}

uint64_t IdOf(const Headers& headers) {
  const auto it = headers.find(kIdHeader);
  return it == headers.end() ? 0 : ParseId(it->second);
}

const char* Counters::Name(Count c) {
  switch (c) {
    case Count::kSent:
      return "sent_in_process";  // children report their confirms only
    case Count::kConfirmed:
      return "confirmed";
    case Count::kRefused:
      return "refused";
    case Count::kUnknownOutcome:
      return "unknown_outcome";
    case Count::kDelivered:
      return "delivered";
    case Count::kDuplicates:
      return "duplicates";
    case Count::kFinishedSure:
      return "finished_sure";
    case Count::kAcked:
      return "acked";
    case Count::kReleased:
      return "released";
    case Count::kExtended:
      return "extended";
    case Count::kLeftToExpire:
      return "left_to_expire";
    case Count::kEmpty:
      return "empty";
    case Count::kFull:
      return "full";
    case Count::kOtherErrors:
      return "other_errors";
    case Count::kKills:
      return "kills";
    case Count::kProducerSessions:
      return "producer_sessions";
    case Count::kProducerDrops:
      return "producer_drops";
    case Count::kUnconfirmedAtDrop:
      return "unconfirmed_at_drop";
    case Count::kConsumerSessions:
      return "consumer_sessions";
    case Count::kConsumerCancels:
      return "consumer_cancels";
    case Count::kConsumerCloses:
      return "consumer_closes";
    case Count::kClientDrops:
      return "client_drops";
    case Count::kRawCancels:
      return "raw_cancels";
    case Count::kStreamCancels:
      return "raw_stream_cancels";
    case Count::kN:
      break;
  }
  return "?";
}

Ledger::Ledger(std::vector<int> dlq_of, Counters* counters)
    : dlq_of_(std::move(dlq_of)), counters_(counters) {}

bool Ledger::IsDlq(int q) const {
  return std::find(dlq_of_.begin(), dlq_of_.end(), q) != dlq_of_.end();
}

uint32_t& Ledger::EntryLocked(Shard& s, uint64_t id) {
  const size_t inc = (id >> 32) & 0xFFFFFF;
  const size_t seq = id & 0xFFFFFFFF;
  if (s.by_incarnation.size() <= inc) s.by_incarnation.resize(inc + 1);
  auto& v = s.by_incarnation[inc];
  if (v.size() <= seq) v.resize(std::max(seq + 1, v.size() * 2));
  return v[seq];
}

void Ledger::Sent(uint64_t id, int queue) {
  counters_->Add(Count::kSent);
  Shard& s = ShardOf(id);
  std::lock_guard lock(s.mu);
  uint32_t& e = EntryLocked(s, id);
  e = (e & ~kQueueMask) | static_cast<uint32_t>(queue) | kQueueKnown | kSent;
}

void Ledger::Confirmed(uint64_t id, int queue) {
  counters_->Add(Count::kConfirmed);
  Shard& s = ShardOf(id);
  std::lock_guard lock(s.mu);
  uint32_t& e = EntryLocked(s, id);
  if ((e & kRefused) != 0) {
    Fail("message " + IdText(id) + " was both refused and confirmed");
  }
  e = (e & ~kQueueMask) | static_cast<uint32_t>(queue) | kQueueKnown | kSent | kConfirmed;
}

void Ledger::Refused(uint64_t id, int queue) {
  counters_->Add(Count::kRefused);
  Shard& s = ShardOf(id);
  std::lock_guard lock(s.mu);
  uint32_t& e = EntryLocked(s, id);
  if ((e & kConfirmed) != 0) Fail("message " + IdText(id) + " was both confirmed and refused");
  if (Field(e, kDeliveriesShift) != 0) {
    Fail("message " + IdText(id) + " was refused by the broker but had been delivered");
  }
  e = (e & ~kQueueMask) | static_cast<uint32_t>(queue) | kQueueKnown | kSent | kRefused;
}

bool Ledger::ReceivedChecked(uint64_t id, int from, uint32_t delivery_count, bool payload_ok,
                             size_t payload_size) {
  counters_->Add(Count::kDelivered);
  if (id == 0) {
    Fail("a message without a soak-id header came from queue #" + std::to_string(from));
    return false;
  }
  if (!payload_ok) {
    Fail("message " + IdText(id) + " from queue #" + std::to_string(from) + " has a payload of " +
         std::to_string(payload_size) + " bytes that does not match its id (expected " +
         std::to_string(PayloadSize(id)) + ")");
  }
  const bool dlq = IsDlq(from);
  Shard& s = ShardOf(id);
  std::lock_guard lock(s.mu);
  uint32_t& e = EntryLocked(s, id);
  if ((e & kQueueKnown) != 0) {
    const int q = static_cast<int>(e & kQueueMask);
    if (from != q && from != dlq_of_[static_cast<size_t>(q)]) {
      Fail("message " + IdText(id) + " put in queue #" + std::to_string(q) +
           " was delivered from queue #" + std::to_string(from));
    }
  }
  if ((e & kRefused) != 0) {
    Fail("message " + IdText(id) + " was refused by the broker yet delivered from queue #" +
         std::to_string(from));
  }
  const uint32_t deliveries = Field(e, kDeliveriesShift);
  if (deliveries > 0) counters_->Add(Count::kDuplicates);
  SetField(e, kDeliveriesShift, deliveries + 1);
  const uint32_t finished = Field(e, kFinishedShift);
  if (!dlq && finished != 0 && finished < 0xFF && delivery_count > finished) {
    Fail("message " + IdText(id) + " was finished at delivery " + std::to_string(finished) +
         " and delivered again (delivery " + std::to_string(delivery_count) + ") from queue #" +
         std::to_string(from));
  }
  if (dlq) {
    e |= kSeenDlq;
    if (finished != 0) {
      Fail("message " + IdText(id) + " was finished at delivery " + std::to_string(finished) +
           " and then dead-lettered into queue #" + std::to_string(from));
    }
    const uint32_t finished_dlq = Field(e, kFinishedDlqShift);
    if (finished_dlq != 0 && finished_dlq < 0xFF && delivery_count > finished_dlq) {
      Fail("dead letter " + IdText(id) + " was finished at delivery " +
           std::to_string(finished_dlq) + " and delivered again (delivery " +
           std::to_string(delivery_count) + ")");
    }
  }
  return payload_ok;
}

void Ledger::Finished(uint64_t id, int from, uint32_t delivery_count) {
  if (id == 0) return;
  counters_->Add(Count::kFinishedSure);
  const int shift = IsDlq(from) ? kFinishedDlqShift : kFinishedShift;
  Shard& s = ShardOf(id);
  std::lock_guard lock(s.mu);
  uint32_t& e = EntryLocked(s, id);
  SetField(e, shift, std::max(Field(e, shift), std::max<uint32_t>(delivery_count, 1)));
}

void Ledger::Fail(const std::string& what) {
  const uint64_t n = failures_.fetch_add(1);
  if (n < 40) {
    std::lock_guard lock(print_mu_);
    std::cerr << "soak: FAIL: " << what << std::endl;
  } else if (n == 40) {
    std::lock_guard lock(print_mu_);
    std::cerr << "soak: FAIL: (further failures counted, not printed)" << std::endl;
  }
}

Ledger::Totals Ledger::Check() {
  Totals t;
  std::vector<std::string> lost;
  for (size_t w = 0; w < shards_.size(); ++w) {
    Shard& s = shards_[w];
    std::lock_guard lock(s.mu);
    for (size_t inc = 0; inc < s.by_incarnation.size(); ++inc) {
      const auto& v = s.by_incarnation[inc];
      for (size_t seq = 0; seq < v.size(); ++seq) {
        const uint32_t e = v[seq];
        const bool received = Field(e, kDeliveriesShift) != 0;
        if (w == kWarmUpWorker) {
          if ((e & kConfirmed) != 0) ++t.warm_up_confirmed;
          if ((e & kConfirmed) != 0 && !received) {
            ++t.lost;
            if (lost.size() < 20) lost.push_back("warm-up message " + std::to_string(seq));
          }
          continue;
        }
        if ((e & kSent) != 0) ++t.sent;
        if ((e & kSeenDlq) != 0) ++t.dead_lettered_seen;
        if ((e & kConfirmed) != 0) {
          ++t.confirmed;
          if (received) {
            ++t.confirmed_received;
          } else {
            ++t.lost;
            if (lost.size() < 20) {
              lost.push_back(IdText(MakeId(static_cast<uint32_t>(w), static_cast<uint32_t>(inc),
                                           static_cast<uint32_t>(seq))) +
                             " (queue #" + std::to_string(e & kQueueMask) + ")");
            }
          }
        } else if ((e & kRefused) == 0 && received) {
          ++t.unknown_received;
        }
      }
    }
  }
  if (t.lost > 0) {
    std::string names;
    for (const auto& l : lost) names += " " + l;
    Fail(std::to_string(t.lost) + " confirmed messages were never delivered; first:" + names);
  }
  return t;
}

}  // namespace basin::soak
