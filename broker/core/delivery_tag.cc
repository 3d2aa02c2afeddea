#include "broker/core/delivery_tag.h"

#include <charconv>

namespace basin::core {

std::string FormatDeliveryTag(DeliveryTag tag) {
  return std::to_string(tag.incarnation) + "." + std::to_string(tag.lease);
}

std::optional<DeliveryTag> ParseDeliveryTag(std::string_view text) {
  const auto dot = text.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot + 1 == text.size()) return std::nullopt;
  DeliveryTag tag;
  const char* end = text.data() + text.size();
  auto [p1, e1] = std::from_chars(text.data(), text.data() + dot, tag.incarnation);
  if (e1 != std::errc() || p1 != text.data() + dot) return std::nullopt;
  auto [p2, e2] = std::from_chars(text.data() + dot + 1, end, tag.lease);
  if (e2 != std::errc() || p2 != end) return std::nullopt;
  return tag;
}

}  // namespace basin::core
