#include "broker/core/lease_table.h"

#include "broker/core/delivery_tag.h"

namespace basin::core {

namespace {

constexpr uint64_t kBitsPerWord = 64;

}  // namespace

std::string LeaseTable::Add(MessagePtr msg, TimePoint expiry) {
  const uint64_t lease = next_lease_++;
  SetDone(lease, false);
  leases_.emplace(lease, Lease{std::move(msg), expiry});
  expiry_.emplace(expiry, lease);
  return FormatDeliveryTag({incarnation_, lease});
}

Result<uint64_t> LeaseTable::Find(std::string_view tag, const std::string& what) const {
  const auto parsed = ParseDeliveryTag(tag);
  // Tags are echoed in errors: cut a long one short.
  const std::string shown = "'" + std::string(tag.substr(0, 64)) + (tag.size() > 64 ? "...'" : "'");
  if (!parsed) {
    return Error{Errc::kInvalidDeliveryTag, "delivery tag " + shown + " is malformed for " + what};
  }
  if (parsed->incarnation != incarnation_ || parsed->lease == 0 || parsed->lease >= next_lease_) {
    return Error{Errc::kUnknownDelivery, "delivery tag " + shown + " names no delivery of " + what +
                                             " (wrong queue, or the queue was recreated)"};
  }
  if (leases_.contains(parsed->lease)) return parsed->lease;
  if (EndedDone(parsed->lease)) {
    return Error{Errc::kAlreadyDone, "delivery " + shown + " of " + what + " is already done"};
  }
  return Error{Errc::kLeaseExpired, "lease " + shown + " on " + what +
                                        " has ended (expired or released); the message may "
                                        "have been redelivered"};
}

MessagePtr LeaseTable::Take(uint64_t lease, End how) {
  auto it = leases_.find(lease);
  MessagePtr msg = std::move(it->second.msg);
  expiry_.erase({it->second.expiry, lease});
  leases_.erase(it);
  Remember(lease, how);
  return msg;
}

void LeaseTable::Remember(uint64_t lease, End how) {
  // Older numbers' slots belong to newer leases now.
  if (InWindow(lease)) SetDone(lease, how == End::kDone);
}

void LeaseTable::SetDone(uint64_t lease, bool done) {
  if (done_.empty()) {
    if (!done) return;  // all clear until something is done
    done_.assign(kEndedKept / kBitsPerWord, 0);
  }
  const uint64_t slot = lease % kEndedKept;
  const uint64_t bit = uint64_t{1} << (slot % kBitsPerWord);
  uint64_t& word = done_[slot / kBitsPerWord];
  word = done ? (word | bit) : (word & ~bit);
}

bool LeaseTable::EndedDone(uint64_t lease) const {
  if (done_.empty() || !InWindow(lease)) return false;
  const uint64_t slot = lease % kEndedKept;
  return (done_[slot / kBitsPerWord] >> (slot % kBitsPerWord)) & 1;
}

void LeaseTable::Extend(uint64_t lease, TimePoint expiry) {
  Lease& l = leases_.at(lease);
  expiry_.erase({l.expiry, lease});
  l.expiry = expiry;
  expiry_.emplace(expiry, lease);
}

std::vector<uint64_t> LeaseTable::Due(TimePoint now) const {
  std::vector<uint64_t> out;
  for (auto it = expiry_.begin(); it != expiry_.end() && it->first <= now; ++it) {
    out.push_back(it->second);
  }
  return out;
}

std::vector<MessagePtr> LeaseTable::TakeAll() {
  std::vector<MessagePtr> out;
  out.reserve(leases_.size());
  for (auto& [id, lease] : leases_) out.push_back(std::move(lease.msg));
  leases_.clear();
  expiry_.clear();
  return out;
}

uint64_t LeaseTable::bytes() const {
  uint64_t total = 0;
  for (const auto& [id, lease] : leases_) total += lease.msg->bytes();
  return total;
}

}  // namespace basin::core
