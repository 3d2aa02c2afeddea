// Typed exceptions of the Basin SDK. The type comes from the machine-readable
// reason the broker sends (`basin-error-reason`), never from message text; what()
// is the broker's message, which names the queue and the limit involved.
#pragma once

#include <stdexcept>
#include <string>

namespace basin {

class Error : public std::runtime_error {
 public:
  // `code` is the gRPC status code number; `reason` the broker's reason
  // (empty for errors that did not come from the broker, such as a dropped
  // connection).
  Error(int code, std::string reason, const std::string& message)
      : std::runtime_error(message), code_(code), reason_(std::move(reason)) {}
  int code() const { return code_; }
  const std::string& reason() const { return reason_; }

 private:
  int code_;
  std::string reason_;
};

// Put found no room before its timeout (QUEUE_FULL).
class Full : public Error {
  using Error::Error;
};
// Put waited on the broker's --max-memory rather than the queue bound (BROKER_MEMORY).
class BrokerMemory : public Full {
  using Full::Full;
};
// Get found nothing before its timeout (QUEUE_EMPTY).
class Empty : public Error {
  using Error::Error;
};
// The queue is closed: puts are refused, and gets fail once it is drained (QUEUE_CLOSED).
class Closed : public Error {
  using Error::Error;
};
// Join timed out with messages unfinished (QUEUE_UNFINISHED).
class JoinTimeout : public Error {
  using Error::Error;
};
// No such queue, or it was deleted while the call waited.
class NotFound : public Error {
  using Error::Error;
};
// CreateQueue with settings other than the existing queue's (QUEUE_EXISTS).
class AlreadyExists : public Error {
  using Error::Error;
};
// A delivery tag that no longer holds a lease: base of the three below.
class DeliveryError : public Error {
  using Error::Error;
};
class LeaseExpired : public DeliveryError {
  using DeliveryError::DeliveryError;
};
class UnknownDelivery : public DeliveryError {
  using DeliveryError::DeliveryError;
};
class AlreadyDone : public DeliveryError {
  using DeliveryError::DeliveryError;
};
// A malformed request: name, duration, tag, reserved header.
class InvalidArgument : public Error {
  using Error::Error;
};
class MessageTooLarge : public InvalidArgument {
  using InvalidArgument::InvalidArgument;
};
// The queue's cap on blocked calls is reached (TOO_MANY_WAITERS).
class TooManyWaiters : public Error {
  using Error::Error;
};
// A subscription fell a whole buffer behind under the disconnect policy.
class SlowSubscriber : public Error {
  using Error::Error;
};
// The broker is shutting down or cannot be reached.
class Unavailable : public Error {
  using Error::Error;
};
// The broker has users and the call's token (or certificate) names none.
class Unauthenticated : public Error {
  using Error::Error;
};
// The user's permissions do not cover the queue or topic, or the call needs
// the admin tag; said the same whether or not the object exists.
class PermissionDenied : public Error {
  using Error::Error;
};
// The user wrote more messages per second than its rate; retry after a pause.
class RateLimited : public Error {
  using Error::Error;
};

}  // namespace basin
