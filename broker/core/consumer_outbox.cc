#include "broker/core/consumer_outbox.h"

#include <algorithm>

namespace basin::core {

bool ConsumerOutbox::BecomeBusyLocked() {
  if (!idle_) return false;
  idle_ = false;
  return true;
}

bool ConsumerOutbox::Push(StreamDelivery d) {
  std::lock_guard lock(mu_);
  if (end_) return false;
  deliveries_.push_back(std::move(d));
  return BecomeBusyLocked();
}

bool ConsumerOutbox::PushExpired(uint64_t tag) {
  std::lock_guard lock(mu_);
  if (end_ || expired_.size() >= kMaxNotices) return false;
  expired_.push_back(tag);
  return BecomeBusyLocked();
}

bool ConsumerOutbox::PushUnknown(std::vector<uint64_t> tags) {
  std::lock_guard lock(mu_);
  if (end_ || tags.empty() || unknown_.size() >= kMaxNotices) return false;
  tags.resize(std::min(tags.size(), kMaxNotices - unknown_.size()));
  unknown_.insert(unknown_.end(), tags.begin(), tags.end());
  return BecomeBusyLocked();
}

bool ConsumerOutbox::End(Error why) {
  std::lock_guard lock(mu_);
  if (end_ || finished_) return false;
  end_ = std::move(why);
  // The queue takes them back; they were never written.
  deliveries_.clear();
  return BecomeBusyLocked();
}

uint64_t ConsumerOutbox::DropUnwritten(const std::vector<uint64_t>& tags) {
  std::lock_guard lock(mu_);
  // Tags are pushed rising and written from the front: everything held from
  // the front's tag on is unwritten, everything below it was written.
  if (deliveries_.empty()) return UINT64_MAX;
  const uint64_t first_unwritten = deliveries_.front().tag;
  if (tags.empty() || tags.back() < first_unwritten) return first_unwritten;
  std::erase_if(deliveries_, [&](const StreamDelivery& d) {
    return std::binary_search(tags.begin(), tags.end(), d.tag);
  });
  return first_unwritten;
}

std::optional<ConsumerPull> ConsumerOutbox::Next(size_t max_deliveries, uint64_t max_bytes) {
  ConsumerPull out;
  std::lock_guard lock(mu_);
  if (end_) {
    finished_ = true;
    out.end = *end_;
    return out;
  }
  if (deliveries_.empty() && expired_.empty() && unknown_.empty()) {
    idle_ = true;
    return std::nullopt;
  }
  uint64_t bytes = 0;
  while (!deliveries_.empty() && out.deliveries.size() < max_deliveries && bytes < max_bytes) {
    bytes += deliveries_.front().message->bytes();
    out.deliveries.push_back(std::move(deliveries_.front()));
    deliveries_.pop_front();
  }
  out.expired.swap(expired_);
  out.unknown_tags.swap(unknown_);
  return out;
}

}  // namespace basin::core
