#include "broker/storage/queue_records.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>

#include "broker/storage/varint.h"

namespace basin::storage {

std::string EncodePut(uint64_t id, std::string_view message) {
  std::string out;
  out.reserve(message.size() + 10);
  PutVarint(out, id);
  out.append(message);
  return out;
}

std::string EncodePut(const core::Message& message) {
  std::string out;
  out.reserve(message.bytes() + 14);
  PutVarint(out, message.id());
  message.EncodeTo(out);
  return out;
}

namespace {

uint64_t WallNanoseconds(core::TimePoint t, core::Duration wall_offset) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch() + wall_offset)
          .count());
}

}  // namespace

std::string EncodePutAttrs(const core::Message& message, core::Duration wall_offset) {
  return EncodePutAttrs(message, wall_offset, message.ready_at(), 0);
}

std::string EncodePutAttrs(const core::Message& message, core::Duration wall_offset,
                           core::TimePoint ready_at, uint32_t deliveries) {
  std::string attrs;
  uint64_t count = 0;
  const auto put = [&](PutAttr tag) {
    PutVarint(attrs, static_cast<uint8_t>(tag));
    ++count;
  };
  if (ready_at != core::TimePoint{}) {
    put(PutAttr::kReadyAt);
    PutVarint(attrs, WallNanoseconds(ready_at, wall_offset));
  }
  if (message.expires_at() != core::kNever) {
    put(PutAttr::kExpiresAt);
    PutVarint(attrs, WallNanoseconds(message.expires_at(), wall_offset));
  }
  if (message.priority() != 0) {
    put(PutAttr::kPriority);
    PutVarint(attrs, message.priority());
  }
  if (!message.group().empty()) {
    put(PutAttr::kGroup);
    PutBytes(attrs, message.group());
  }
  if (deliveries != 0) {
    put(PutAttr::kDeliveries);
    PutVarint(attrs, deliveries);
  }
  std::string out;
  out.reserve(message.bytes() + attrs.size() + 16);
  PutVarint(out, message.id());
  PutVarint(out, count);
  out += attrs;
  message.EncodeTo(out);
  return out;
}

std::string EncodeRetry(const core::QueueJournal::Retry& retry, core::Duration wall_offset) {
  std::string out;
  PutVarint(out, retry.id);
  PutVarint(out, retry.deliveries);
  PutVarint(out, WallNanoseconds(retry.at, wall_offset));
  return out;
}

std::string EncodeIds(const std::vector<uint64_t>& ids) {
  std::string out;
  for (uint64_t id : ids) PutVarint(out, id);
  return out;
}

std::string EncodeNextId(uint64_t next_id) {
  std::string out;
  PutVarint(out, next_id);
  return out;
}

// count, then (dedup id, message id) pairs; producer; count, then (sequence,
// message id) pairs.
std::string EncodePutKeys(const core::PutKeys& keys) {
  std::string out;
  PutVarint(out, keys.dedup_ids.size());
  for (const auto& [dedup, id] : keys.dedup_ids) {
    PutBytes(out, dedup);
    PutVarint(out, id);
  }
  PutBytes(out, keys.producer);
  PutVarint(out, keys.sequences.size());
  for (const auto& [sequence, id] : keys.sequences) {
    PutVarint(out, sequence);
    PutVarint(out, id);
  }
  return out;
}

namespace {

// Far above what a put may carry (core::kMaxGroupBytes), below what a
// message's trailer can hold.
constexpr size_t kMaxStoredGroupBytes = 4096;

// Reads the attributes of a kPutAttrs body, leaving `in` at the message.
std::optional<StoredAttrs> DecodePutAttrs(std::string_view& in) {
  StoredAttrs attrs;
  const auto count = GetVarint(in);
  if (!count || *count > in.size()) return std::nullopt;
  for (uint64_t i = 0; i < *count; ++i) {
    const auto tag = GetVarint(in);
    if (!tag) return std::nullopt;
    if (*tag == static_cast<uint8_t>(PutAttr::kGroup)) {
      auto group = GetBytes(in);
      if (!group || group->size() > kMaxStoredGroupBytes) return std::nullopt;
      attrs.group = std::move(*group);
      continue;
    }
    const auto value = GetVarint(in);
    if (!value) return std::nullopt;
    switch (static_cast<PutAttr>(*tag)) {
      case PutAttr::kReadyAt:
      case PutAttr::kExpiresAt:
        if (*value == 0 || *value > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
        (*tag == static_cast<uint8_t>(PutAttr::kReadyAt) ? attrs.ready_at : attrs.expires_at) =
            static_cast<int64_t>(*value);
        break;
      case PutAttr::kPriority:
        if (*value > UINT8_MAX) return std::nullopt;
        attrs.priority = static_cast<uint8_t>(*value);
        break;
      case PutAttr::kDeliveries:
        if (*value > UINT32_MAX) return std::nullopt;
        attrs.deliveries = static_cast<uint32_t>(*value);
        break;
      default:
        return std::nullopt;  // a newer broker's: do not guess
    }
  }
  return attrs;
}

std::optional<core::PutKeys> DecodePutKeys(std::string_view in) {
  core::PutKeys keys;
  const auto dedups = GetVarint(in);
  if (!dedups || *dedups > in.size()) return std::nullopt;
  for (uint64_t i = 0; i < *dedups; ++i) {
    auto dedup = GetBytes(in);
    const auto id = GetVarint(in);
    if (!dedup || !id) return std::nullopt;
    keys.dedup_ids.emplace_back(std::move(*dedup), *id);
  }
  auto producer = GetBytes(in);
  const auto sequences = GetVarint(in);
  if (!producer || !sequences || *sequences > in.size()) return std::nullopt;
  keys.producer = std::move(*producer);
  for (uint64_t i = 0; i < *sequences; ++i) {
    const auto sequence = GetVarint(in);
    const auto id = GetVarint(in);
    if (!sequence || !id) return std::nullopt;
    keys.sequences.emplace_back(*sequence, *id);
  }
  return keys;
}

}  // namespace

bool QueueReplay::Apply(uint64_t position, uint8_t type, std::string_view body) {
  switch (static_cast<QueueRecord>(type)) {
    case QueueRecord::kDefined:
      definition_ = std::string(body);
      return true;
    case QueueRecord::kPut: {
      const auto id = GetVarint(body);
      // The last id has no next one: a log cannot hold it.
      if (!id || *id == UINT64_MAX) return false;
      live_[*id] = {std::string(body), 0, position, {}};
      next_id_ = std::max(next_id_, *id + 1);
      return true;
    }
    case QueueRecord::kPutAttrs: {
      const auto id = GetVarint(body);
      if (!id || *id == UINT64_MAX) return false;
      auto attrs = DecodePutAttrs(body);
      if (!attrs) return false;
      const uint32_t deliveries = attrs->deliveries;
      live_[*id] = {std::string(body), deliveries, position, std::move(*attrs)};
      next_id_ = std::max(next_id_, *id + 1);
      return true;
    }
    case QueueRecord::kRetry: {
      const auto id = GetVarint(body);
      const auto deliveries = GetVarint(body);
      const auto at = GetVarint(body);
      if (!id || !deliveries || !at || *deliveries > UINT32_MAX || *at == 0 ||
          *at > static_cast<uint64_t>(INT64_MAX) || !body.empty()) {
        return false;
      }
      auto it = live_.find(*id);
      if (it == live_.end()) return true;  // done, or its put was before a dropped segment
      it->second.attrs.ready_at = static_cast<int64_t>(*at);
      it->second.attrs.deliveries = static_cast<uint32_t>(*deliveries);
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
    case QueueRecord::kBound:
      bindings_.insert(std::string(body));
      return true;
    case QueueRecord::kUnbound:
      bindings_.erase(std::string(body));
      return true;
    case QueueRecord::kPutKeys: {
      auto keys = DecodePutKeys(body);
      if (!keys) return false;
      // Only the keys of puts that came back. Damage, or a power cut that
      // kept some pages of a batch and not others, can leave the keys record
      // without some of the puts before it (segment_replay.h); a key for a
      // message that exists nowhere would answer the client's resend as a
      // duplicate of it. The record follows its batch's puts in one group,
      // and nothing can end them in between, so a put of this batch that
      // was replayed is still live here (ids are never reused).
      const auto replayed = [&](const auto& key) { return live_.contains(key.second); };
      std::erase_if(keys->dedup_ids, std::not_fn(replayed));
      std::erase_if(keys->sequences, std::not_fn(replayed));
      if (keys->dedup_ids.empty() && keys->sequences.empty()) return true;
      keys_.push_back(std::move(*keys));
      return true;
    }
    case QueueRecord::kNextId: {
      const auto next = GetVarint(body);
      if (!next) return false;
      next_id_ = std::max(next_id_, *next);
      return true;
    }
  }
  return false;
}

}  // namespace basin::storage
