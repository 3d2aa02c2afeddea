// The bytes of a log on disk: segment headers and records (docs/design.md,
// "Durability"). Little-endian throughout.
//
// Format 2, written by this version. A segment file starts with a header
//   magic u32 | version u32 (2) | base u64 | salt u64 | crc32c u32 (of the 24 bytes before)
// and holds records
//   magic u32 | length u32 | body crc u32 | header crc u32 | type u8 | body
// where `length` counts type + body, the body CRC covers type + body, and the
// header CRC covers the segment's salt, the record's log position, `length`
// and the body CRC.
//
// Why the header CRC binds salt and position: message payloads are stored
// verbatim, so a client can put the exact bytes of a record inside one. Replay
// only looks inside a payload after damage, and there a copied record sits at
// another position than the one it was made for; the salt (random per
// segment, never sent anywhere) keeps anyone from making a record for a
// position in advance. The header CRC also bounds replay's work: a fake header
// that claims a gigabyte body is refused before the body is read.
//
// Format 1, written before: no segment header; records
//   magic u32 | length u32 | crc32c(type + body) u32 | type u8 | body.
// Still read, never written (see SegmentedLog::Open).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace basin::storage {

inline constexpr size_t kSegmentHeaderBytes = 28;
inline constexpr size_t kRecordHeaderBytes = 16;  // format 2, before the type byte
inline constexpr size_t kFormat1HeaderBytes = 12;
// Log positions stay below this (4 EiB: no log reaches it), so a position
// plus a length read from disk cannot wrap around.
inline constexpr uint64_t kMaxLogPosition = 1ull << 62;
// A length above this is damage, not a record: the broker's message limit is
// far below it. Also the most a replay ever reads into memory at once.
inline constexpr uint32_t kMaxRecordLength = 1u << 30;

struct SegmentHeader {
  uint64_t base = 0;  // the log position of the file's first byte
  uint64_t salt = 0;
};

enum class SegmentStart {
  kFormat2,    // a valid header
  kTorn,       // the file ends inside a header (or before 4 bytes): a crash while creating it
  kFormat1,    // a format-1 record
  kNewer,      // a header of a later format version: not this broker's to read or write
  kUnreadable  // none of these: damage
};

std::string EncodeSegmentHeader(const SegmentHeader& header);
// Classifies the start of a segment file; `start` is its first
// min(size, kSegmentHeaderBytes) bytes. Fills `header` for kFormat2.
SegmentStart CheckSegmentStart(std::string_view start, SegmentHeader* header);

// The bytes a record with a `body_bytes` body takes (format 2).
inline uint64_t RecordBytes(uint64_t body_bytes) { return kRecordHeaderBytes + 1 + body_bytes; }
void EncodeRecord(std::string& out, uint64_t salt, uint64_t position, uint8_t type,
                  std::string_view body);

// Format 2: the length (type + body) a record header at `position` declares,
// or 0 if it is not one written there. `checked` counts bytes checksummed.
uint32_t CheckRecordHeader(std::string_view header, uint64_t salt, uint64_t position,
                           uint64_t* checked);
// Format 2: whether `type_and_body` (`length` bytes after the header) is the
// one the header's body CRC names.
bool CheckRecordBody(std::string_view header, std::string_view type_and_body, uint64_t* checked);

// Format 1: the length a header declares if it is within bounds, or 0.
uint32_t Format1Length(std::string_view header);
bool CheckFormat1Body(std::string_view header, std::string_view type_and_body, uint64_t* checked);

}  // namespace basin::storage
