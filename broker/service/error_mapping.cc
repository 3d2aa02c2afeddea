#include "broker/service/error_mapping.h"

namespace basin::service {

using core::Errc;
using grpc::StatusCode;

WireError ToWire(Errc errc) {
  switch (errc) {
    case Errc::kInvalidArgument:
      return {StatusCode::INVALID_ARGUMENT, "INVALID_ARGUMENT"};
    case Errc::kInvalidName:
      return {StatusCode::INVALID_ARGUMENT, "INVALID_NAME"};
    case Errc::kInvalidTimeout:
      return {StatusCode::INVALID_ARGUMENT, "INVALID_DURATION"};
    case Errc::kInvalidDeliveryTag:
      return {StatusCode::INVALID_ARGUMENT, "INVALID_DELIVERY_TAG"};
    case Errc::kReservedHeader:
      return {StatusCode::INVALID_ARGUMENT, "RESERVED_HEADER"};
    case Errc::kMessageTooLarge:
      return {StatusCode::INVALID_ARGUMENT, "MESSAGE_TOO_LARGE"};
    case Errc::kQueueExists:
      return {StatusCode::ALREADY_EXISTS, "QUEUE_EXISTS"};
    case Errc::kQueueNotFound:
      return {StatusCode::NOT_FOUND, "QUEUE_NOT_FOUND"};
    case Errc::kQueueDeleted:
      return {StatusCode::NOT_FOUND, "QUEUE_DELETED"};
    case Errc::kDeadLetterNotFound:
      return {StatusCode::FAILED_PRECONDITION, "DEAD_LETTER_QUEUE_NOT_FOUND"};
    case Errc::kDeadLetterInUse:
      return {StatusCode::FAILED_PRECONDITION, "DEAD_LETTER_IN_USE"};
    case Errc::kQueueFull:
      return {StatusCode::RESOURCE_EXHAUSTED, "QUEUE_FULL"};
    case Errc::kBrokerMemory:
      return {StatusCode::RESOURCE_EXHAUSTED, "BROKER_MEMORY"};
    case Errc::kTooManyWaiters:
      return {StatusCode::RESOURCE_EXHAUSTED, "TOO_MANY_WAITERS"};
    case Errc::kTooManyProducers:
      return {StatusCode::RESOURCE_EXHAUSTED, "TOO_MANY_PRODUCERS"};
    case Errc::kQueueEmpty:
      return {StatusCode::DEADLINE_EXCEEDED, "QUEUE_EMPTY"};
    case Errc::kJoinTimeout:
      return {StatusCode::DEADLINE_EXCEEDED, "QUEUE_UNFINISHED"};
    case Errc::kQueueClosed:
      return {StatusCode::FAILED_PRECONDITION, "QUEUE_CLOSED"};
    case Errc::kQueueDrained:
      return {StatusCode::OUT_OF_RANGE, "QUEUE_CLOSED"};
    case Errc::kLeaseExpired:
      return {StatusCode::FAILED_PRECONDITION, "LEASE_EXPIRED"};
    case Errc::kUnknownDelivery:
      return {StatusCode::FAILED_PRECONDITION, "UNKNOWN_DELIVERY"};
    case Errc::kAlreadyDone:
      return {StatusCode::FAILED_PRECONDITION, "ALREADY_DONE"};
    case Errc::kInvalidTopic:
      return {StatusCode::INVALID_ARGUMENT, "INVALID_TOPIC"};
    case Errc::kBindingNotFound:
      return {StatusCode::NOT_FOUND, "BINDING_NOT_FOUND"};
    case Errc::kSlowSubscriber:
      return {StatusCode::RESOURCE_EXHAUSTED, "SLOW_SUBSCRIBER"};
    case Errc::kTooManySubscriptions:
      return {StatusCode::RESOURCE_EXHAUSTED, "TOO_MANY_SUBSCRIPTIONS"};
    case Errc::kTooManyBindings:
      return {StatusCode::RESOURCE_EXHAUSTED, "TOO_MANY_BINDINGS"};
    case Errc::kTooManyPatternNodes:
      return {StatusCode::RESOURCE_EXHAUSTED, "TOO_MANY_PATTERN_NODES"};
    case Errc::kTooManyQueues:
      return {StatusCode::RESOURCE_EXHAUSTED, "TOO_MANY_QUEUES"};
    case Errc::kShutdown:
      return {StatusCode::UNAVAILABLE, "SHUTTING_DOWN"};
    case Errc::kStorageUnavailable:
      return {StatusCode::UNAVAILABLE, "STORAGE_UNAVAILABLE"};
    case Errc::kUnauthenticated:
      return {StatusCode::UNAUTHENTICATED, "UNAUTHENTICATED"};
    case Errc::kPermissionDenied:
      return {StatusCode::PERMISSION_DENIED, "PERMISSION_DENIED"};
    case Errc::kRateLimited:
      return {StatusCode::RESOURCE_EXHAUSTED, "RATE_LIMITED"};
    case Errc::kCancelled:
      return {StatusCode::CANCELLED, "CANCELLED"};
  }
  return {StatusCode::INTERNAL, "INTERNAL"};
}

grpc::Status ToStatus(grpc::ServerContextBase* ctx, const core::Error& error) {
  const WireError wire = ToWire(error.code);
  ctx->AddTrailingMetadata(kReasonMetadataKey, std::string(wire.reason));
  return grpc::Status(wire.code, error.message);
}

}  // namespace basin::service
