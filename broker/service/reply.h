// Answers for unary calls that complete at once, shared by the services.
#pragma once

#include <grpcpp/grpcpp.h>

#include "broker/core/errc.h"
#include "broker/service/error_mapping.h"

namespace basin::service {

inline grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* ctx,
                                       const grpc::Status& status) {
  grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
  r->Finish(status);
  return r;
}

inline grpc::ServerUnaryReactor* ReplyError(grpc::CallbackServerContext* ctx,
                                            const core::Error& error) {
  return Reply(ctx, ToStatus(ctx, error));
}

}  // namespace basin::service
