#include "broker/core/subscription.h"

namespace basin::core {

Subscription::Subscription(uint64_t id, SubscriptionOptions options, MemoryBudget* memory,
                           std::function<void()> wake)
    : id_(id), options_(std::move(options)), memory_(memory), wake_(std::move(wake)) {}

Subscription::~Subscription() {
  if (buffered_bytes_ > 0) memory_->Release(buffered_bytes_, Clock::now());
}

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

Subscription::Offered Subscription::Offer(PublishedPtr message, const std::string* pattern) {
  Offered out;
  uint64_t credit = 0;  // bytes of messages dropped here, still reserved in the budget
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    if (end_) return out;
    const uint64_t bytes = message->bytes;
    const bool drop_oldest = options_.policy == OverflowPolicy::kDropOldest;
    auto drop = [&] {
      credit += buffer_.front().message->bytes;
      DropOldestLocked(&out.dropped);
    };
    // A message larger than the whole buffer can never fit: it alone is lost.
    const bool hopeless = bytes > options_.max_bytes;
    if (drop_oldest && !hopeless) {
      while (!buffer_.empty() && !FitsLocked(bytes)) drop();
    }
    // The broker's --max-memory is a bound like the buffer's own: under
    // drop_oldest, older messages make way for the new one there too.
    bool fits = FitsLocked(bytes);
    while (fits) {
      if (credit >= bytes) {
        credit -= bytes;
        break;
      }
      if (memory_->TryReserve(bytes - credit)) {
        credit = 0;
        break;
      }
      if (!drop_oldest || buffer_.empty()) fits = false;
      if (fits) drop();
    }
    if (fits) {
      buffer_.push_back({std::move(message), pattern, pending_gap_});
      pending_gap_ = 0;
      buffered_bytes_ += bytes;
      out.accepted = true;
    } else if (drop_oldest) {
      ++pending_gap_;  // the new message itself is lost
      out.dropped.push_back(std::move(message));
    } else {
      end_ = Error{Errc::kSlowSubscriber, "subscriber too slow: its buffer of " +
                                              std::to_string(options_.max_messages) +
                                              " messages / " + std::to_string(options_.max_bytes) +
                                              " bytes overflowed (policy disconnect)"};
      credit += buffered_bytes_;
      buffered_bytes_ = 0;
      for (Delivered& b : buffer_) out.dropped.push_back(std::move(b.message));
      buffer_.clear();
      out.dropped.push_back(std::move(message));
    }
    if (idle_ && (out.accepted || end_)) {
      idle_ = false;
      wake = true;
    }
  }
  if (credit > 0) memory_->Release(credit, Clock::now());
  if (wake) wake_();
  return out;
}

std::optional<Pulled> Subscription::Next(size_t max_messages, uint64_t max_bytes) {
  std::optional<Pulled> out;
  uint64_t freed = 0;
  {
    std::lock_guard lock(mu_);
    if (end_) {
      finished_ = true;
      out.emplace();
      out->end = *end_;
    } else if (buffer_.empty()) {
      idle_ = true;
    } else {
      out.emplace();
      while (!buffer_.empty() && out->messages.size() < max_messages &&
             (out->messages.empty() || freed + buffer_.front().message->bytes <= max_bytes)) {
        freed += buffer_.front().message->bytes;
        out->messages.push_back(std::move(buffer_.front()));
        buffer_.pop_front();
      }
      // The stream now holds these messages; their buffer space is free.
      buffered_bytes_ -= freed;
    }
  }
  if (freed > 0) memory_->Release(freed, Clock::now());
  return out;
}

void Subscription::End(Error why) {
  uint64_t freed = 0;
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    if (end_ || finished_) return;
    end_ = std::move(why);
    freed = buffered_bytes_;
    buffered_bytes_ = 0;
    buffer_.clear();
    if (idle_) {
      idle_ = false;
      wake = true;
    }
  }
  if (freed > 0) memory_->Release(freed, Clock::now());
  if (wake) wake_();
}

}  // namespace basin::core
