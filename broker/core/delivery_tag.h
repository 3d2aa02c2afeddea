// A delivery tag names one hand-out (one lease) of one incarnation of a queue,
// so a tag from an earlier lease or from a deleted-and-recreated queue can never
// act on the wrong message. On the wire it is an opaque string "<incarnation>.<lease>".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace basin::core {

struct DeliveryTag {
  uint64_t incarnation = 0;
  uint64_t lease = 0;
};

std::string FormatDeliveryTag(DeliveryTag tag);
std::optional<DeliveryTag> ParseDeliveryTag(std::string_view text);

}  // namespace basin::core
