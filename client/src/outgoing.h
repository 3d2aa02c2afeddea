// What an OutgoingMessage asks beyond its bytes, written onto the PutRequest
// (single form) or PutMessage (batch, Produce) that carries it.
#pragma once

#include <chrono>

#include "basin/client.h"

namespace basin::detail {

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
    const auto whole = duration_cast<seconds>(m.delay);
    auto* after = out->mutable_deliver_after();
    after->set_seconds(whole.count());
    after->set_nanos(static_cast<int32_t>(duration_cast<nanoseconds>(m.delay - whole).count()));
  }
}

}  // namespace basin::detail
