// The Consume stream: deliveries out, acks and releases in.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>

#include "basin/v1/queue.grpc.pb.h"
#include "broker/core/broker.h"
#include "broker/service/access.h"

namespace basin::service {

// Starts reading the stream; the reactor deletes itself when done. Wake-ups
// of an idle stream are handed to `post` (another thread).
grpc::ServerBidiReactor<v1::ConsumeRequest, v1::ConsumeResponse>* StartConsume(
    grpc::CallbackServerContext* ctx, core::Broker* broker, Access* access,
    std::function<void(std::function<void()>)> post);

}  // namespace basin::service
