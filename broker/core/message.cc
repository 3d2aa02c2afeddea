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

void MessageDeleter::operator()(Message* m) const {
  m->~Message();
  ::operator delete(m);
}

uint64_t Message::AccountedBytes(std::string_view payload, const Headers& headers) {
  return EncodedHeadersLen(headers) + payload.size();
}

MessagePtr Message::Make(uint64_t id, std::string_view payload, const Headers& headers) {
  const uint64_t headers_len = EncodedHeadersLen(headers);
  void* raw = ::operator new(sizeof(Message) + headers_len + payload.size());
  MessagePtr m(new (raw) Message());
  m->set_id(id);
  m->headers_len_ = static_cast<uint32_t>(headers_len);
  m->payload_len_ = static_cast<uint32_t>(payload.size());
  char* out = m->data();
  for (const auto& [k, v] : headers) out = PutString(PutString(out, k), v);
  if (!payload.empty()) std::memcpy(out, payload.data(), payload.size());
  return m;
}

Result<uint64_t> Message::Validate(std::string_view payload, const Headers& headers,
                                   uint64_t max_bytes) {
  for (const auto& [key, value] : headers) {
    if (key.compare(0, kReservedHeaderPrefix.size(), kReservedHeaderPrefix) == 0) {
      return Error{Errc::kReservedHeader, "header '" + key + "' uses the reserved prefix '" +
                                              std::string(kReservedHeaderPrefix) + "'"};
    }
  }
  const uint64_t bytes = AccountedBytes(payload, headers);
  if (bytes > max_bytes) {
    return Error{Errc::kMessageTooLarge, "message of " + std::to_string(bytes) +
                                             " bytes exceeds the broker limit of " +
                                             std::to_string(max_bytes) + " bytes"};
  }
  return bytes;
}

std::string_view Message::payload() const {
  return std::string_view(data() + headers_len_, payload_len_);
}

Headers Message::headers() const {
  Headers out;
  const char* in = data();
  const char* end = in + headers_len_;
  while (in < end) {
    std::string_view k = GetString(in);
    std::string_view v = GetString(in);
    out.emplace(k, v);
  }
  return out;
}

}  // namespace basin::core
