#include "broker/core/subscription.h"

namespace basin::core {

Subscription::Subscription(uint64_t id, SubscriptionOptions options, std::function<void()> wake,
                           MemoryCharge footprint)
    : id_(id),
      options_(std::move(options)),
      wake_(std::move(wake)),
      footprint_(std::move(footprint)) {}

Subscription::~Subscription() = default;

bool Subscription::FitsLocked(uint64_t bytes) const {
  return buffer_.size() < options_.max_messages && buffered_bytes_ + bytes <= options_.max_bytes;
}

void Subscription::DropOldestLocked(std::vector<PublishedPtr>* dropped) {
  Delivered oldest = std::move(buffer_.front());
  buffer_.pop_front();
  buffered_bytes_ -= oldest.message->bytes;
  // The gap moves to whatever now follows the last message handed out.
  const uint64_t gap = oldest.dropped_before + 1;
  if (buffer_.empty()) {
    pending_gap_ += gap;
  } else {
    buffer_.front().dropped_before += gap;
  }
  dropped->push_back(std::move(oldest.message));
}

bool Subscription::EndLocked(Error why, std::vector<PublishedPtr>* dropped) {
  end_ = std::move(why);
  for (Delivered& b : buffer_) dropped->push_back(std::move(b.message));
  buffer_.clear();
  buffered_bytes_ = 0;
  if (!idle_) return false;
  idle_ = false;
  return true;
}

Subscription::Offered Subscription::Offer(PublishedPtr message, const std::string* pattern) {
  Offered out;
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    if (end_) return out;
    const uint64_t bytes = message->bytes;
    const bool drop_oldest = options_.policy == OverflowPolicy::kDropOldest;
    // A message larger than the whole buffer can never fit: it alone is lost.
    const bool hopeless = bytes > options_.max_bytes;
    if (drop_oldest && !hopeless) {
      while (!buffer_.empty() && !FitsLocked(bytes)) DropOldestLocked(&out.dropped);
    }
    if (FitsLocked(bytes)) {
      buffer_.push_back({std::move(message), pattern, pending_gap_});
      pending_gap_ = 0;
      buffered_bytes_ += bytes;
      out.accepted = true;
      if (idle_) {
        idle_ = false;
        wake = true;
      }
    } else if (drop_oldest) {
      ++pending_gap_;  // the new message itself is lost
      out.dropped.push_back(std::move(message));
    } else {
      wake = EndLocked(
          Error{Errc::kSlowSubscriber, "subscriber too slow: its buffer of " +
                                           std::to_string(options_.max_messages) + " messages / " +
                                           std::to_string(options_.max_bytes) +
                                           " bytes overflowed (policy disconnect)"},
          &out.dropped);
      out.dropped.push_back(std::move(message));
    }
  }
  if (wake) wake_();
  return out;
}

PublishedPtr Subscription::DropOldest() {
  std::vector<PublishedPtr> dropped;
  {
    std::lock_guard lock(mu_);
    if (end_ || buffer_.empty() || options_.policy != OverflowPolicy::kDropOldest) return nullptr;
    DropOldestLocked(&dropped);
  }
  return std::move(dropped.front());
}

uint64_t Subscription::droppable_bytes() const {
  std::lock_guard lock(mu_);
  if (end_ || options_.policy != OverflowPolicy::kDropOldest) return 0;
  return buffered_bytes_;
}

Subscription::Offered Subscription::Lose(PublishedPtr message) {
  Offered out;
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    if (end_) return out;
    if (options_.policy == OverflowPolicy::kDropOldest) {
      ++pending_gap_;
    } else {
      wake = EndLocked(Error{Errc::kSlowSubscriber,
                             "subscriber too slow: the broker's memory for subscriber buffers "
                             "(--max-subscriber-memory) is full (policy disconnect)"},
                       &out.dropped);
    }
    out.dropped.push_back(std::move(message));
  }
  if (wake) wake_();
  return out;
}

std::optional<Pulled> Subscription::Next(size_t max_messages, uint64_t max_bytes) {
  std::optional<Pulled> out;
  std::lock_guard lock(mu_);
  if (end_) {
    finished_ = true;
    out.emplace();
    out->end = *end_;
  } else if (buffer_.empty()) {
    idle_ = true;
  } else {
    out.emplace();
    uint64_t taken = 0;
    while (!buffer_.empty() && out->messages.size() < max_messages &&
           (out->messages.empty() || taken + buffer_.front().message->bytes <= max_bytes)) {
      taken += buffer_.front().message->bytes;
      out->messages.push_back(std::move(buffer_.front()));
      buffer_.pop_front();
    }
    // The stream holds these now: their memory goes when it lets them go.
    buffered_bytes_ -= taken;
  }
  return out;
}

void Subscription::End(Error why) {
  std::vector<PublishedPtr> dropped;  // let go after the lock: their memory is released then
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    if (end_ || finished_) return;
    wake = EndLocked(std::move(why), &dropped);
  }
  if (wake) wake_();
}

}  // namespace basin::core
