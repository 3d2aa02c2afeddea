// A SubscribeResponse's bytes written straight from the core's shared
// messages, for the Subscribe stream's raw (ByteBuffer) handler.
//
// Why by hand: a published message is one allocation shared by every
// subscription (core::PublishedMessage). Building a v1::TopicMessage per
// subscriber would copy its topic, payload and headers into protobuf strings
// once per subscriber and then serialise them again. Here a body of at least
// kSharedBodyBytes goes out as a gRPC slice that references the shared
// message (holding it until gRPC has written it): no copy per subscriber. A
// smaller body is copied into the batch's frame bytes, which costs less than
// the reference. The bytes are exactly protobuf's encoding of the same
// SubscribeResponse (subscribe_wire_test checks it), so every client parses
// them as usual.
#pragma once

#include <grpcpp/support/byte_buffer.h>

#include <chrono>
#include <cstddef>
#include <vector>

#include "broker/core/subscription.h"

namespace basin::service {

inline constexpr size_t kSharedBodyBytes = 1024;

// One SubscribeResponse holding `messages` (field 2), in order.
grpc::ByteBuffer EncodeMessages(const std::vector<core::Delivered>& messages);

// Waits up to `timeout` until gRPC has let go of every slice that references a
// shared message; false if some are still held. A referenced message gives its
// bytes back to the router's memory share when let go, so the server's
// shutdown waits for this before the router can be destroyed (gRPC may free a
// transport's buffers on its own threads after the server is gone).
bool AwaitSharedSlices(std::chrono::milliseconds timeout);

}  // namespace basin::service
