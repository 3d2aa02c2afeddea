// An append-only log of typed records in a directory of segment files — the
// storage of one durable queue (see docs/design.md, "Durability").
//
// A record on disk:  magic u32 | length u32 | crc32c u32 | type u8 | body
// (little-endian; length counts type + body; the CRC covers type + body).
// The magic lets a reader find the next record after a damaged one.
//
// Segments are named by the log position of their first byte
// (00000000000000000000.log, ...), so a position names a byte in the whole
// log and a segment can be dropped whole once nothing in it is live.
//
// Appends go to a memory buffer; Flush() writes it, Sync() also makes it
// durable (fdatasync). The caller decides when to sync — that is where group
// commit lives. A failed Flush or Sync (a full disk, an I/O error) cuts the
// file back to where it was before and forgets the records that were not
// made safe, so the log never holds half a batch and the next append (once
// space returns) follows intact records. Not thread-safe: one owner.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace basin::storage {

struct LogOptions {
  uint64_t max_segment_bytes = 64ull << 20;
};

// A damaged stretch found by Replay.
struct Damage {
  std::string segment;     // file name
  uint64_t offset = 0;     // within the segment
  uint64_t skipped = 0;    // bytes passed over
  bool truncated = false;  // a torn tail, cut off the file
};

struct ReplayReport {
  uint64_t records = 0;
  uint64_t segments = 0;
  std::vector<Damage> damage;
};

// A failed system call, with errno's text and the file involved.
struct IoError {
  std::string message;
  int error = 0;  // errno (ENOSPC for a full disk)
};

// fsyncs a directory, so that the names created or removed in it survive a
// crash.
bool SyncDir(const std::string& dir, IoError* error);

class SegmentedLog {
 public:
  using Visitor = std::function<void(uint64_t position, uint8_t type, std::string_view body)>;

  // Opens (creating if needed) the log in `dir`, replays every record into
  // `visit` in order, cuts torn tails off, and positions the log for
  // appending after the last good record.
  static std::unique_ptr<SegmentedLog> Open(const std::string& dir, const LogOptions& options,
                                            const Visitor& visit, ReplayReport* report,
                                            IoError* error);
  ~SegmentedLog();
  SegmentedLog(const SegmentedLog&) = delete;
  SegmentedLog& operator=(const SegmentedLog&) = delete;

  // Buffers a record and returns its position. Rolls to a new segment first
  // when the current one is full (that writes and syncs the old one).
  std::optional<uint64_t> Append(uint8_t type, std::string_view body, IoError* error);
  // Writes buffered records to the file. On failure they are forgotten.
  bool Flush(IoError* error);
  // Flush, then fdatasync: every record appended so far survives a crash.
  // On failure every record since the last Sync is forgotten.
  bool Sync(IoError* error);
  // Deletes segments that hold only positions below `position`.
  bool DropBefore(uint64_t position, IoError* error);

  // The position the next record will get.
  uint64_t end() const { return segments_.back().base + segments_.back().size; }
  // Bytes in segment files, buffered records included.
  uint64_t disk_bytes() const;
  size_t segments() const { return segments_.size(); }

 private:
  struct Segment {
    uint64_t base;
    uint64_t size;
  };
  SegmentedLog(std::string dir, LogOptions options);
  bool OpenTail(IoError* error);
  bool Roll(IoError* error);
  // Cuts the tail segment back to `size` bytes and forgets the rest.
  void CutBack(uint64_t size);

  const std::string dir_;
  const LogOptions options_;
  std::vector<Segment> segments_;  // by base; the last one is written
  int fd_ = -1;                    // the last segment
  std::string buffer_;             // appended, not yet written
  uint64_t written_ = 0;           // bytes of the tail segment in its file
  uint64_t synced_ = 0;            // of those, made durable
};

}  // namespace basin::storage
