// Translation between basin.v1 messages and core types. No policy lives here
// beyond what a wire format needs checked (a Duration's own validity).
#pragma once

#include <google/protobuf/duration.pb.h>
#include <grpcpp/grpcpp.h>

#include "basin/v1/queue.pb.h"
#include "broker/core/broker.h"
#include "broker/core/errc.h"
#include "broker/core/queue.h"
#include "broker/core/time.h"
#include "broker/service/error_mapping.h"

namespace basin::service {

// A Duration as protobuf defines it: |seconds| <= 315,576,000,000, |nanos| <
// 1e9, same signs. Negative ones are refused too: no wait or lease is negative.
core::Result<core::Duration> FromProto(const google::protobuf::Duration& d, std::string_view field);
void ToProto(core::Duration d, google::protobuf::Duration* out);

// The absolute deadline of a blocking call: `timeout` when set (0 = don't
// wait), else the broker's longest wait; capped at max_wait and at the call's
// own gRPC deadline.
core::Result<core::TimePoint> WaitDeadline(const grpc::ServerContextBase& ctx, bool has_timeout,
                                           const google::protobuf::Duration& timeout,
                                           core::Duration max_wait, core::TimePoint now);

core::Headers FromProto(const google::protobuf::Map<std::string, std::string>& headers);

// Core specs for a batch of proto messages, received at `now`. The specs
// point into `msgs` and into `*headers`, which must outlive them. A field
// that does not parse (a negative deliver_after) marks its message invalid.
std::vector<core::MessageSpec> ToSpecs(
    const google::protobuf::RepeatedPtrField<v1::PutMessage>& msgs,
    std::vector<core::Headers>* headers, core::TimePoint now);
// The same for the single form of a Put.
core::MessageSpec ToSpec(const v1::PutRequest& req, std::vector<core::Headers>* headers,
                         core::TimePoint now);
void ToProto(const core::PutResult& result, v1::PutResult* out);
// Moves the delivery's payload into `out`.
void ToProto(core::Delivery&& delivery, v1::Message* out);
// Copies the message out of the queue's block the delivery holds.
void ToProto(const core::StreamDelivery& delivery, v1::Message* out);
// The deliveries as columns (ConsumeRequest.columns), in order.
void ToColumns(const std::vector<core::StreamDelivery>& deliveries, v1::DeliveryColumns* out);

// The queue's settings, statistics and `bindings` (topics bound to it).
void ToProto(const core::Queue& queue, const std::vector<std::string>& bindings,
             v1::QueueInfo* out);

}  // namespace basin::service
