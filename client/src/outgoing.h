// SDK values as the wire carries them: durations, and what an
// OutgoingMessage asks beyond its bytes, written onto the PutRequest (single
// form) or PutMessage (batch, Produce) that carries it.
#pragma once

#include <google/protobuf/duration.pb.h>

#include <chrono>

#include "basin/client.h"

namespace basin::detail {

inline void ToProto(std::chrono::milliseconds d, google::protobuf::Duration* out) {
  out->set_seconds(d.count() / 1000);
  out->set_nanos(static_cast<int32_t>(d.count() % 1000) * 1'000'000);
}

inline std::chrono::milliseconds FromProto(const google::protobuf::Duration& d) {
  return std::chrono::milliseconds(d.seconds() * 1000 + d.nanos() / 1'000'000);
}

template <typename Proto>
void ScheduleToProto(const OutgoingMessage& m, Proto* out) {
  using std::chrono::duration_cast;
  using std::chrono::nanoseconds;
  using std::chrono::seconds;
  if (m.deliver_at != std::chrono::system_clock::time_point{}) {
    const auto since_epoch = duration_cast<nanoseconds>(m.deliver_at.time_since_epoch());
    const auto whole = duration_cast<seconds>(since_epoch);
    auto* at = out->mutable_deliver_at();
    at->set_seconds(whole.count());
    at->set_nanos(static_cast<int32_t>((since_epoch - whole).count()));
  } else if (m.delay > std::chrono::milliseconds(0)) {
    ToProto(m.delay, out->mutable_deliver_after());
  }
  out->set_priority(m.priority);
  if (!m.group.empty()) out->set_group(m.group);
  if (m.ttl > std::chrono::milliseconds(0)) ToProto(m.ttl, out->mutable_expires_after());
}

}  // namespace basin::detail
