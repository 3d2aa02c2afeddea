#include "broker/core/consumer_outbox.h"

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
  if (end_) return false;
  expired_.push_back(tag);
  return BecomeBusyLocked();
}

bool ConsumerOutbox::PushUnknown(std::vector<uint64_t> tags) {
  std::lock_guard lock(mu_);
  if (end_ || tags.empty()) return false;
  unknown_.insert(unknown_.end(), tags.begin(), tags.end());
  return BecomeBusyLocked();
}

bool ConsumerOutbox::End(Error why) {
  std::lock_guard lock(mu_);
  if (end_ || finished_) return false;
  end_ = std::move(why);
  deliveries_.clear();  // the queue takes them back; they were never written
  return BecomeBusyLocked();
}

std::optional<ConsumerPull> ConsumerOutbox::Next(size_t max_deliveries) {
  std::lock_guard lock(mu_);
  ConsumerPull out;
  if (end_) {
    finished_ = true;
    out.end = *end_;
    return out;
  }
  if (deliveries_.empty() && expired_.empty() && unknown_.empty()) {
    idle_ = true;
    return std::nullopt;
  }
  while (!deliveries_.empty() && out.deliveries.size() < max_deliveries) {
    out.deliveries.push_back(std::move(deliveries_.front()));
    deliveries_.pop_front();
  }
  out.expired.swap(expired_);
  out.unknown_tags.swap(unknown_);
  return out;
}

}  // namespace basin::core
