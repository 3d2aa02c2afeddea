// The core's one error vocabulary. Every failure the broker can report is an Errc
// plus a message that names the queue and the limit involved. The wire mapping
// (gRPC code and `basin-error-reason`) lives in broker/service/error_mapping.cc,
// and docs/api.md carries the same table; a test keeps the two in step.
#pragma once

#include <iterator>
#include <string>
#include <utility>
#include <variant>

namespace basin::core {

enum class Errc {
  kInvalidArgument,       // a malformed request field
  kInvalidName,           // queue name outside [A-Za-z0-9._-]{1,200}
  kInvalidTimeout,        // negative or malformed duration
  kInvalidDeliveryTag,    // a tag that does not parse
  kReservedHeader,        // application header starting with `basin-`
  kMessageTooLarge,       // payload + headers above --max-message-bytes or max_bytes
  kQueueExists,           // CreateQueue with different settings
  kQueueNotFound,         // no queue of that name
  kQueueDeleted,          // the queue was deleted while the call waited
  kDeadLetterNotFound,    // options name a dead-letter queue that does not exist
  kDeadLetterInUse,       // DeleteQueue on a queue that is another's dead-letter queue
  kQueueFull,             // put timed out on a full queue
  kBrokerMemory,          // put timed out because --max-memory is reached
  kTooManyWaiters,        // per-queue cap on blocked calls reached
  kTooManyProducers,      // per-queue cap on remembered idempotent producers reached
  kQueueEmpty,            // get timed out on an empty queue
  kJoinTimeout,           // join timed out with unfinished messages
  kQueueClosed,           // put on a closed queue
  kQueueDrained,          // get on a closed queue with nothing left
  kLeaseExpired,          // the lease ended (expired or released) before this call
  kUnknownDelivery,       // the tag names no delivery of this queue incarnation
  kAlreadyDone,           // task_done twice for one delivery
  kInvalidTopic,          // topic name or pattern outside the grammar
  kBindingNotFound,       // UnbindQueue of a binding that does not exist
  kSlowSubscriber,        // a subscription overflowed under the disconnect policy
  kTooManySubscriptions,  // --max-subscriptions or --max-subscriptions-per-connection reached
  kTooManyBindings,       // --max-bindings reached
  kTooManyPatternNodes,   // --max-pattern-nodes reached
  kTooManyQueues,         // --max-queues reached
  kShutdown,              // the broker is stopping
  kStorageUnavailable,    // a durable queue's log could not be written (disk full, I/O error)
  kUnauthenticated,       // no credential, or one no user has (users configured)
  kPermissionDenied,      // the user's permissions do not cover the call's object
  kRateLimited,           // the user wrote faster than its rate (--user-rate)
  kCancelled,             // the caller went away (keep last)
};

// Every Errc, for tables and tests.
inline constexpr Errc kAllErrcs[] = {
    Errc::kInvalidArgument,    Errc::kInvalidName,
    Errc::kInvalidTimeout,     Errc::kInvalidDeliveryTag,
    Errc::kReservedHeader,     Errc::kMessageTooLarge,
    Errc::kQueueExists,        Errc::kQueueNotFound,
    Errc::kQueueDeleted,       Errc::kDeadLetterNotFound,
    Errc::kDeadLetterInUse,    Errc::kQueueFull,
    Errc::kBrokerMemory,       Errc::kTooManyWaiters,
    Errc::kTooManyProducers,   Errc::kQueueEmpty,
    Errc::kJoinTimeout,        Errc::kQueueClosed,
    Errc::kQueueDrained,       Errc::kLeaseExpired,
    Errc::kUnknownDelivery,    Errc::kAlreadyDone,
    Errc::kInvalidTopic,       Errc::kBindingNotFound,
    Errc::kSlowSubscriber,     Errc::kTooManySubscriptions,
    Errc::kTooManyBindings,    Errc::kTooManyPatternNodes,
    Errc::kTooManyQueues,      Errc::kShutdown,
    Errc::kStorageUnavailable, Errc::kUnauthenticated,
    Errc::kPermissionDenied,   Errc::kRateLimited,
    Errc::kCancelled,
};
// kCancelled stays last, so this catches an Errc missing from the list.
static_assert(std::size(kAllErrcs) == static_cast<size_t>(Errc::kCancelled) + 1);

struct Error {
  Errc code;
  std::string message;
};

// A value or an Error. Deliberately small: the core needs no more than this.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)
  bool ok() const { return v_.index() == 0; }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class Result<void> {
 public:
  Result() = default;
  Result(Error error)
      : error_(std::move(error)), ok_(false) {}  // NOLINT(google-explicit-constructor)
  bool ok() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_{Errc::kInvalidArgument, {}};
  bool ok_ = true;
};

}  // namespace basin::core
