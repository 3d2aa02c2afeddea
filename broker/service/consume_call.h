// The Consume stream: deliveries out, acks and releases in.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>

#include "basin/v1/queue.grpc.pb.h"
#include "broker/core/broker.h"
#include "broker/service/access.h"

namespace basin::service {

// Starts reading the stream; the reactor deletes itself when done. A wake-up
// of an idle stream writes the next response on the thread that woke it
// (after the queue's lock: a put's or an ack's reaction, a Publish routed to
// the queue, a drain): a hop to another thread cost two context switches per
// wake-up (docs/design.md, "Latency"). On the committer and the timer, which
// every durable queue and every deadline share, it is handed to `post`.
grpc::ServerBidiReactor<v1::ConsumeRequest, v1::ConsumeResponse>* StartConsume(
    grpc::CallbackServerContext* ctx, core::Broker* broker, Access* access,
    std::function<void(std::function<void()>)> post);

}  // namespace basin::service
