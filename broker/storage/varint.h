// LEB128 varints, the integers of every record body, and length-prefixed
// byte strings.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace basin::storage {

inline void PutVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

// Reads a varint off the front of `in`; nullopt if it is cut short.
inline std::optional<uint64_t> GetVarint(std::string_view& in) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64 && !in.empty(); shift += 7) {
    const auto byte = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    v |= static_cast<uint64_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) return v;
  }
  return std::nullopt;
}

// A length-prefixed byte string.
inline void PutBytes(std::string& out, std::string_view s) {
  PutVarint(out, s.size());
  out.append(s);
}

inline std::optional<std::string> GetBytes(std::string_view& in) {
  const auto size = GetVarint(in);
  if (!size || *size > in.size()) return std::nullopt;
  std::string s(in.substr(0, *size));
  in.remove_prefix(*size);
  return s;
}

}  // namespace basin::storage
