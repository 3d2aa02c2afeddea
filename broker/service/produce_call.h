// The Produce stream: batches in, one confirm per batch out, in order.
#pragma once

#include <grpcpp/grpcpp.h>

#include "basin/v1/queue.grpc.pb.h"
#include "broker/core/broker.h"

namespace basin::service {

// Starts reading the stream; the reactor deletes itself when done.
grpc::ServerBidiReactor<v1::ProduceRequest, v1::ProduceResponse>* StartProduce(
    grpc::CallbackServerContext* ctx, core::Broker* broker);

}  // namespace basin::service
