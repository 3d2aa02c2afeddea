// The PublishStream stream: batches of publishes in, one confirm per batch out,
// in order.
#pragma once

#include <grpcpp/grpcpp.h>

#include "basin/v1/topic.grpc.pb.h"
#include "broker/core/broker.h"
#include "broker/service/access.h"
#include "broker/service/live_calls.h"

namespace basin::service {

// Starts reading the stream; the reactor deletes itself when done. It is in
// `live` while it lives, so that a draining broker can end it.
grpc::ServerBidiReactor<v1::PublishStreamRequest, v1::PublishStreamResponse>* StartPublishStream(
    grpc::CallbackServerContext* ctx, core::Broker* broker, Access* access, LiveCalls* live);

}  // namespace basin::service
