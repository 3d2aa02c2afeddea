#include "broker/core/held_deliveries.h"

#include <algorithm>

namespace basin::core {
namespace {

// Holes are squeezed out once there are more than this plus the live count.
constexpr size_t kHolesAllowed = 64;

}  // namespace

uint64_t HeldDeliveries::Add(MessagePtr msg, TimePoint expiry) {
  const uint64_t tag = next_tag_++;
  entries_.push_back({tag, expiry, std::move(msg)});
  ++live_;
  return tag;
}

std::deque<HeldDeliveries::Entry>::iterator HeldDeliveries::Find(uint64_t tag) {
  if (entries_.empty() || tag < entries_.front().tag || tag > entries_.back().tag) {
    return entries_.end();
  }
  // Tags are handed out one apart, so a tag sits at its distance from the
  // front until holes are squeezed out (Tidy), and at its distance from the
  // back if it came after the last squeeze: one look per ack, not a search,
  // even while an old delivery pins the front.
  const size_t size = entries_.size();
  const uint64_t from_front = tag - entries_.front().tag;
  const uint64_t from_back = entries_.back().tag - tag;
  auto it = entries_.end();
  if (from_front < size && entries_[from_front].tag == tag) {
    it = entries_.begin() + static_cast<std::ptrdiff_t>(from_front);
  } else if (from_back < size && entries_[size - 1 - from_back].tag == tag) {
    it = entries_.begin() + static_cast<std::ptrdiff_t>(size - 1 - from_back);
  } else {
    it = std::lower_bound(entries_.begin(), entries_.end(), tag,
                          [](const Entry& e, uint64_t t) { return e.tag < t; });
  }
  if (it == entries_.end() || it->tag != tag || it->msg == nullptr) return entries_.end();
  return it;
}

MessagePtr HeldDeliveries::Take(uint64_t tag) {
  auto it = Find(tag);
  if (it == entries_.end()) return nullptr;
  MessagePtr msg = std::move(it->msg);
  --live_;
  Tidy();
  return msg;
}

std::vector<HeldDeliveries::Taken> HeldDeliveries::TakeUpTo(uint64_t up_to) {
  std::vector<Taken> out;
  for (auto it = entries_.begin(); it != entries_.end() && it->tag <= up_to; ++it) {
    if (it->msg != nullptr) out.push_back({it->tag, std::move(it->msg)});
  }
  live_ -= out.size();
  Tidy();
  return out;
}

std::vector<HeldDeliveries::Taken> HeldDeliveries::TakeExpired(TimePoint now) {
  std::vector<Taken> out;
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->msg == nullptr) continue;
    if (it->expiry > now) {
      if (in_order_) break;
      continue;
    }
    out.push_back({it->tag, std::move(it->msg)});
  }
  live_ -= out.size();
  Tidy();
  return out;
}

bool HeldDeliveries::Extend(uint64_t tag, TimePoint expiry) {
  auto it = Find(tag);
  if (it == entries_.end()) return false;
  it->expiry = expiry;
  if (std::next(it) != entries_.end()) in_order_ = false;
  return true;
}

void HeldDeliveries::ExtendUpTo(uint64_t up_to, TimePoint expiry) {
  auto it = entries_.begin();
  for (; it != entries_.end() && it->tag <= up_to; ++it) it->expiry = expiry;
  if (it != entries_.begin() && it != entries_.end()) in_order_ = false;
}

TimePoint HeldDeliveries::next_expiry() const {
  if (live_ == 0) return kNever;
  if (in_order_) return entries_.front().expiry;
  TimePoint earliest = kNever;
  for (const Entry& e : entries_) {
    if (e.msg != nullptr) earliest = std::min(earliest, e.expiry);
  }
  return earliest;
}

uint64_t HeldDeliveries::bytes() const {
  uint64_t total = 0;
  for (const Entry& e : entries_) {
    if (e.msg != nullptr) total += e.msg->bytes();
  }
  return total;
}

void HeldDeliveries::Tidy() {
  while (!entries_.empty() && entries_.front().msg == nullptr) entries_.pop_front();
  if (live_ == 0) in_order_ = true;
  if (entries_.size() > 2 * live_ + kHolesAllowed) {
    std::erase_if(entries_, [](const Entry& e) { return e.msg == nullptr; });
  }
}

}  // namespace basin::core
