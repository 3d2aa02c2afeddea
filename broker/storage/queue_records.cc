#include "broker/storage/queue_records.h"

#include <algorithm>

namespace basin::storage {
namespace {

void PutVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

// Reads a varint off the front of `in`; nullopt if it is cut short.
std::optional<uint64_t> GetVarint(std::string_view& in) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64 && !in.empty(); shift += 7) {
    const auto byte = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    v |= static_cast<uint64_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) return v;
  }
  return std::nullopt;
}

}  // namespace

std::string EncodePut(uint64_t id, std::string_view message) {
  std::string out;
  out.reserve(message.size() + 10);
  PutVarint(out, id);
  out.append(message);
  return out;
}

std::string EncodeIds(const std::vector<uint64_t>& ids) {
  std::string out;
  for (uint64_t id : ids) PutVarint(out, id);
  return out;
}

bool QueueReplay::Apply(uint64_t position, uint8_t type, std::string_view body) {
  switch (static_cast<QueueRecord>(type)) {
    case QueueRecord::kDefined:
      definition_ = std::string(body);
      return true;
    case QueueRecord::kPut: {
      const auto id = GetVarint(body);
      if (!id) return false;
      live_[*id] = {std::string(body), 0, position};
      next_id_ = std::max(next_id_, *id + 1);
      return true;
    }
    case QueueRecord::kDelivered:
    case QueueRecord::kDone:
      while (!body.empty()) {
        const auto id = GetVarint(body);
        if (!id) return false;
        auto it = live_.find(*id);
        if (it == live_.end()) continue;  // its put was before a dropped segment
        if (static_cast<QueueRecord>(type) == QueueRecord::kDone) {
          live_.erase(it);
        } else {
          ++it->second.deliveries;
        }
      }
      return true;
    case QueueRecord::kClosed:
      closed_ = true;
      return true;
  }
  return false;
}

std::optional<uint64_t> QueueReplay::oldest_live_position() const {
  std::optional<uint64_t> oldest;
  for (const auto& [id, m] : live_) {
    if (!oldest || m.position < *oldest) oldest = m.position;
  }
  return oldest;
}

}  // namespace basin::storage
