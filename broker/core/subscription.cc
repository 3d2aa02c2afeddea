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
  Buffered oldest = std::move(buffer_.front());
  buffer_.pop_front();
  buffered_bytes_ -= oldest.message->bytes;
  ++gap_;
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
    if (drop_oldest) {
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
      buffer_.push_back({std::move(message), pattern});
      buffered_bytes_ += bytes;
      out.accepted = true;
    } else if (drop_oldest) {
      ++gap_;  // the new message itself is lost
      out.dropped.push_back(std::move(message));
    } else {
      end_ = Error{Errc::kSlowSubscriber, "subscriber too slow: its buffer of " +
                                              std::to_string(options_.max_messages) +
                                              " messages / " + std::to_string(options_.max_bytes) +
                                              " bytes overflowed (policy disconnect)"};
      credit += buffered_bytes_;
      buffered_bytes_ = 0;
      for (Buffered& b : buffer_) out.dropped.push_back(std::move(b.message));
      buffer_.clear();
      out.dropped.push_back(std::move(message));
    }
    if (idle_ && (out.accepted || gap_ > 0 || end_)) {
      idle_ = false;
      wake = true;
    }
  }
  if (credit > 0) memory_->Release(credit, Clock::now());
  if (wake) wake_();
  return out;
}

std::optional<SubscriptionEvent> Subscription::Next() {
  std::optional<SubscriptionEvent> ev;
  uint64_t freed = 0;
  {
    std::lock_guard lock(mu_);
    if (end_) {
      finished_ = true;
      ev.emplace();
      ev->kind = SubscriptionEvent::Kind::kEnd;
      ev->end = *end_;
    } else if (gap_ > 0) {
      ev.emplace();
      ev->kind = SubscriptionEvent::Kind::kGap;
      ev->dropped = gap_;
      gap_ = 0;
    } else if (buffer_.empty()) {
      idle_ = true;
    } else {
      Buffered next = std::move(buffer_.front());
      buffer_.pop_front();
      // The stream now holds the message; its buffer space is free.
      freed = next.message->bytes;
      buffered_bytes_ -= freed;
      ev.emplace();
      ev->message = std::move(next.message);
      ev->pattern = next.pattern;
    }
  }
  if (freed > 0) memory_->Release(freed, Clock::now());
  return ev;
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
