#include "broker/storage/record_format.h"

#include "broker/storage/crc32c.h"

namespace basin::storage {
namespace {

constexpr uint32_t kSegmentMagic = 0xB45E6D02;
constexpr uint32_t kFormatVersion = 2;
constexpr uint32_t kRecordMagic = 0xB45C0D02;
constexpr uint32_t kFormat1Magic = 0xB45171A5;
constexpr size_t kSealedHeaderBytes = 24;  // what the segment header's CRC covers

void Store32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (8 * i));
}

void Store64(char* p, uint64_t v) {
  Store32(p, static_cast<uint32_t>(v));
  Store32(p + 4, static_cast<uint32_t>(v >> 32));
}

void Put32(std::string& out, uint32_t v) {
  char b[4];
  Store32(b, v);
  out.append(b, 4);
}

void Put64(std::string& out, uint64_t v) {
  char b[8];
  Store64(b, v);
  out.append(b, 8);
}

uint32_t Get32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint32_t>(u[0]) | static_cast<uint32_t>(u[1]) << 8 |
         static_cast<uint32_t>(u[2]) << 16 | static_cast<uint32_t>(u[3]) << 24;
}

uint64_t Get64(const char* p) { return Get32(p) | static_cast<uint64_t>(Get32(p + 4)) << 32; }

// The header CRC of a format-2 record: what ties it to its segment and its
// position.
uint32_t HeaderCrc(uint64_t salt, uint64_t position, uint32_t length, uint32_t body_crc,
                   uint64_t* checked) {
  char bound[24];
  Store64(bound, salt);
  Store64(bound + 8, position);
  Store32(bound + 16, length);
  Store32(bound + 20, body_crc);
  if (checked != nullptr) *checked += sizeof bound;
  return Crc32c(bound, sizeof bound);
}

}  // namespace

std::string EncodeSegmentHeader(const SegmentHeader& header) {
  std::string out;
  out.reserve(kSegmentHeaderBytes);
  Put32(out, kSegmentMagic);
  Put32(out, kFormatVersion);
  Put64(out, header.base);
  Put64(out, header.salt);
  Put32(out, Crc32c(out.data(), out.size()));
  return out;
}

SegmentStart CheckSegmentStart(std::string_view start, SegmentHeader* header) {
  if (start.size() < 4) return SegmentStart::kTorn;
  const uint32_t magic = Get32(start.data());
  if (magic == kFormat1Magic) return SegmentStart::kFormat1;
  if (magic != kSegmentMagic) return SegmentStart::kUnreadable;
  if (start.size() < 8) return SegmentStart::kTorn;
  // The version before the CRC: a later format may lay out (and check) the
  // rest of its header differently.
  const uint32_t version = Get32(start.data() + 4);
  if (version > kFormatVersion) return SegmentStart::kNewer;
  if (start.size() < kSegmentHeaderBytes) return SegmentStart::kTorn;
  if (version != kFormatVersion ||
      Crc32c(start.data(), kSealedHeaderBytes) != Get32(start.data() + kSealedHeaderBytes)) {
    return SegmentStart::kUnreadable;
  }
  header->base = Get64(start.data() + 8);
  header->salt = Get64(start.data() + 16);
  return SegmentStart::kFormat2;
}

void EncodeRecord(std::string& out, uint64_t salt, uint64_t position, uint8_t type,
                  std::string_view body) {
  const auto length = static_cast<uint32_t>(body.size() + 1);
  const uint32_t body_crc = Crc32c(body.data(), body.size(), Crc32c(&type, 1));
  Put32(out, kRecordMagic);
  Put32(out, length);
  Put32(out, body_crc);
  Put32(out, HeaderCrc(salt, position, length, body_crc, nullptr));
  out.push_back(static_cast<char>(type));
  out.append(body);
}

uint32_t CheckRecordHeader(std::string_view header, uint64_t salt, uint64_t position,
                           uint64_t* checked) {
  if (header.size() < kRecordHeaderBytes || Get32(header.data()) != kRecordMagic) return 0;
  const uint32_t length = Get32(header.data() + 4);
  if (length == 0 || length > kMaxRecordLength) return 0;
  const uint32_t body_crc = Get32(header.data() + 8);
  if (HeaderCrc(salt, position, length, body_crc, checked) != Get32(header.data() + 12)) return 0;
  return length;
}

bool CheckRecordBody(std::string_view header, std::string_view type_and_body, uint64_t* checked) {
  *checked += type_and_body.size();
  return Crc32c(type_and_body.data(), type_and_body.size()) == Get32(header.data() + 8);
}

uint32_t Format1Length(std::string_view header) {
  if (header.size() < kFormat1HeaderBytes || Get32(header.data()) != kFormat1Magic) return 0;
  const uint32_t length = Get32(header.data() + 4);
  return length == 0 || length > kMaxRecordLength ? 0 : length;
}

bool CheckFormat1Body(std::string_view header, std::string_view type_and_body, uint64_t* checked) {
  *checked += type_and_body.size();
  return Crc32c(type_and_body.data(), type_and_body.size()) == Get32(header.data() + 8);
}

}  // namespace basin::storage
