#include "broker/core/message.h"

#include <cstring>
#include <new>

namespace basin::core {
namespace {

// Headers are stored as (u32 key length, key, u32 value length, value) pairs.
constexpr size_t kLenBytes = sizeof(uint32_t);

uint64_t EncodedHeadersLen(const Headers& headers) {
  uint64_t n = 0;
  for (const auto& [k, v] : headers) n += 2 * kLenBytes + k.size() + v.size();
  return n;
}

char* PutString(char* out, std::string_view s) {
  const auto len = static_cast<uint32_t>(s.size());
  std::memcpy(out, &len, kLenBytes);
  std::memcpy(out + kLenBytes, s.data(), s.size());
  return out + kLenBytes + s.size();
}

std::string_view GetString(const char*& in) {
  uint32_t len = 0;
  std::memcpy(&len, in, kLenBytes);
  std::string_view s(in + kLenBytes, len);
  in += kLenBytes + len;
  return s;
}

}  // namespace

void Message::Unref(const Message* m) {
  // acq_rel: whoever frees sees every other holder's reads finished.
  if (m->holds_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  m->~Message();
  ::operator delete(const_cast<Message*>(m));
}

void MessageDeleter::operator()(Message* m) const { Message::Unref(m); }

MessageRef::MessageRef(const Message& m) : m_(&m) {
  m.holds_.fetch_add(1, std::memory_order_relaxed);
}

MessageRef::MessageRef(const MessageRef& o) : m_(o.m_) {
  if (m_ != nullptr) m_->holds_.fetch_add(1, std::memory_order_relaxed);
}

MessageRef::~MessageRef() {
  if (m_ != nullptr) Message::Unref(m_);
}

uint64_t Message::AccountedBytes(std::string_view payload, const Headers& headers,
                                 const MessageAttrs& attrs) {
  const uint64_t base = EncodedHeadersLen(headers) + payload.size();
  return attrs.empty() ? base : base + kAttrsOverhead + attrs.group.size();
}

MessagePtr Message::Allocate(uint64_t id, const MessageAttrs& attrs, uint64_t rest) {
  const bool with_attrs = !attrs.empty();
  const size_t trailer = with_attrs ? sizeof(StoredAttrs) + attrs.group.size() : 0;
  void* raw = ::operator new(sizeof(Message) + trailer + rest);
  MessagePtr m(new (raw) Message());
  m->set_id(id);
  if (with_attrs) {
    m->headers_len_ = kHasAttrs;
    auto* stored = reinterpret_cast<StoredAttrs*>(m.get() + 1);
    stored->ready_at = attrs.ready_at.time_since_epoch().count();
    stored->expires_at = attrs.expires_at.time_since_epoch().count();
    stored->slot = 0;
    stored->place = 0;
    stored->group_len = static_cast<uint16_t>(attrs.group.size());
    stored->priority = attrs.priority;
    if (!attrs.group.empty()) {
      std::memcpy(reinterpret_cast<char*>(stored + 1), attrs.group.data(), attrs.group.size());
    }
  }
  return m;
}

MessageAttrs Message::attrs() const {
  MessageAttrs out;
  if (!has_attrs()) return out;
  out.ready_at = ready_at();
  out.expires_at = expires_at();
  out.priority = priority();
  out.group = group();
  return out;
}

TimePoint Message::ready_at() const {
  return has_attrs() ? TimePoint(Duration(stored_attrs().ready_at)) : TimePoint{};
}

TimePoint Message::expires_at() const {
  return has_attrs() ? TimePoint(Duration(stored_attrs().expires_at)) : kNever;
}

std::string_view Message::group() const {
  if (!has_attrs()) return {};
  return std::string_view(reinterpret_cast<const char*>(&stored_attrs() + 1),
                          stored_attrs().group_len);
}

MessagePtr Message::Make(uint64_t id, std::string_view payload, const Headers& headers,
                         const MessageAttrs& attrs) {
  const uint64_t headers_len = EncodedHeadersLen(headers);
  MessagePtr m = Allocate(id, attrs, headers_len + payload.size());
  m->headers_len_ |= static_cast<uint32_t>(headers_len);
  m->payload_len_ = static_cast<uint32_t>(payload.size());
  char* out = m->data();
  for (const auto& [k, v] : headers) out = PutString(PutString(out, k), v);
  if (!payload.empty()) std::memcpy(out, payload.data(), payload.size());
  return m;
}

Result<uint64_t> Message::Validate(std::string_view payload, const Headers& headers,
                                   uint64_t max_bytes, const MessageAttrs& attrs) {
  for (const auto& [key, value] : headers) {
    if (key.compare(0, kReservedHeaderPrefix.size(), kReservedHeaderPrefix) == 0) {
      return Error{Errc::kReservedHeader, "header '" + key + "' uses the reserved prefix '" +
                                              std::string(kReservedHeaderPrefix) + "'"};
    }
  }
  const uint64_t bytes = AccountedBytes(payload, headers, attrs);
  if (bytes > max_bytes) {
    return Error{Errc::kMessageTooLarge, "message of " + std::to_string(bytes) +
                                             " bytes exceeds the broker limit of " +
                                             std::to_string(max_bytes) + " bytes"};
  }
  return bytes;
}

void Message::EncodeTo(std::string& out) const {
  const uint32_t headers_len = this->headers_len();
  out.append(reinterpret_cast<const char*>(&headers_len), kLenBytes);
  out.append(data(), uint64_t{headers_len} + payload_len_);
}

Result<MessagePtr> Message::Decode(uint64_t id, uint32_t delivery_count, std::string_view encoded,
                                   const MessageAttrs& attrs) {
  const Error bad{Errc::kInvalidArgument, "not an encoded message"};
  uint32_t headers_len = 0;
  if (encoded.size() < kLenBytes) return bad;
  std::memcpy(&headers_len, encoded.data(), kLenBytes);
  encoded.remove_prefix(kLenBytes);
  if (headers_len > encoded.size() || (headers_len & kHasAttrs) != 0) return bad;
  // Every header string must end inside the headers, or headers() would read
  // past them.
  for (size_t at = 0; at < headers_len;) {
    for (int part = 0; part < 2; ++part) {
      uint32_t len = 0;
      if (headers_len - at < kLenBytes) return bad;
      std::memcpy(&len, encoded.data() + at, kLenBytes);
      at += kLenBytes;
      if (headers_len - at < len) return bad;
      at += len;
    }
  }
  MessagePtr m = Allocate(id, attrs, encoded.size());
  m->delivery_count_ = delivery_count;
  m->headers_len_ |= headers_len;
  m->payload_len_ = static_cast<uint32_t>(encoded.size() - headers_len);
  std::memcpy(m->data(), encoded.data(), encoded.size());
  return m;
}

std::string_view Message::payload() const {
  return std::string_view(data() + headers_len(), payload_len_);
}

Headers Message::headers() const {
  Headers out;
  const char* in = data();
  const char* end = in + headers_len();
  while (in < end) {
    std::string_view k = GetString(in);
    std::string_view v = GetString(in);
    out.emplace(k, v);
  }
  return out;
}

}  // namespace basin::core
