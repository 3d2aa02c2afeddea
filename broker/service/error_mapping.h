// The one place where core errors become wire errors. Each Errc has exactly one
// gRPC status code and one reason string, sent in the trailing metadata key
// `basin-error-reason`. docs/api.md holds the same table; error_table_test
// checks that the two agree.
#pragma once

#include <grpcpp/grpcpp.h>

#include <string_view>

#include "broker/core/errc.h"

namespace basin::service {

inline constexpr char kReasonMetadataKey[] = "basin-error-reason";

struct WireError {
  grpc::StatusCode code;
  std::string_view reason;
};

WireError ToWire(core::Errc errc);

// Adds the reason to ctx's trailing metadata and returns the status to finish with.
grpc::Status ToStatus(grpc::ServerContextBase* ctx, const core::Error& error);

}  // namespace basin::service
