// The Consume stream: deliveries out, acks and releases in.
#pragma once

#include <grpcpp/grpcpp.h>

#include "basin/v1/queue.grpc.pb.h"
#include "broker/core/broker.h"
#include "broker/service/access.h"

namespace basin::service {

// Starts reading the stream; the reactor deletes itself when done. A wake-up
// of an idle stream writes on the thread that woke it (a put's, an ack's, the
// timer's or the committer's), after the queue's lock: a hop to another
// thread cost two context switches per wake-up (docs/design.md, "Latency").
grpc::ServerBidiReactor<v1::ConsumeRequest, v1::ConsumeResponse>* StartConsume(
    grpc::CallbackServerContext* ctx, core::Broker* broker, Access* access);

}  // namespace basin::service
