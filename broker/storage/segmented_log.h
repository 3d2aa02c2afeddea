// An append-only log of typed records in a directory of segment files — the
// storage of one durable queue (see docs/design.md, "Durability").
//
// Segments are named by the log position of their first byte
// (00000000000000000000.log, ...), so a position names a byte in the whole
// log and a segment can be dropped whole once nothing in it is live. The
// bytes of segments and records are in record_format.h; replay of one
// segment, and what it does with damage, in segment_replay.h.
//
// Appends go to a memory buffer; Flush() writes it, Sync() also makes it
// durable (fdatasync). The caller decides when to sync — that is where group
// commit lives. A failed Flush or Sync (a full disk, an I/O error) cuts the
// file back to where it was before and forgets the records that were not
// made safe, so the log never holds half a batch and the next append (once
// space returns) follows intact records; synced_end() then tells the caller
// which of its records are durable. Not thread-safe: one owner.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace basin::storage {

struct SegmentFile;
struct SegmentReplay;

// The system calls that change a log's files, for LogOptions::faults.
enum class FileOp {
  kCreate,    // a new segment file: open, header, fdatasync (then kSyncDir)
  kWrite,     // buffered records written to the tail
  kSync,      // fdatasync of the tail (also of a new segment's header)
  kTruncate,  // a torn tail or a failed write cut off
  kUnlink,    // a segment dropped, or a failed roll's file removed
  kSyncDir,   // the directory, after a file was created
};
// Tests' fault injection: called before each such call with the file (or
// directory) it is about; a non-zero return is an errno the call then fails
// with, without being made. Empty in the broker. Tests need it because a full
// disk, a file-descriptor limit or a failed fdatasync cannot be caused on
// demand, and those are the paths that must report exactly what was made
// durable. Called from whichever thread uses the log.
using FaultHook = std::function<int(FileOp op, const std::string& path)>;

struct LogOptions {
  uint64_t max_segment_bytes = 64ull << 20;
  FaultHook faults = nullptr;
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
  // Files named like segments that are not segments of this log (a name past
  // 2^64, a position no log reaches), left where they are.
  std::vector<std::string> ignored;
  // Empty segments a failed roll left inside the log's positions, removed.
  std::vector<std::string> removed;
  // Bytes checksummed: replay's work, linear in the log's size however the
  // log is damaged.
  uint64_t checked_bytes = 0;
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
  // `visit` in order, cuts a torn tail off, and positions the log for
  // appending after the last good record (in a new segment if the last one
  // is of format 1 or unreadable). Null with `error` if a file cannot be
  // read or written, or is of a later format.
  static std::unique_ptr<SegmentedLog> Open(const std::string& dir, const LogOptions& options,
                                            const Visitor& visit, ReplayReport* report,
                                            IoError* error);
  ~SegmentedLog();
  SegmentedLog(const SegmentedLog&) = delete;
  SegmentedLog& operator=(const SegmentedLog&) = delete;

  // Buffers a record and returns its position. Rolls to a new segment first
  // when the current one is full; the roll syncs the records buffered so far
  // into the old segment. If the new segment cannot be created (EMFILE,
  // ENOSPC) the record goes into the current one and the roll is tried again
  // at the next append. Null if the record cannot be taken: then every
  // record buffered since the last Sync is forgotten (synced_end() says
  // which are safe).
  std::optional<uint64_t> Append(uint8_t type, std::string_view body, IoError* error);
  // Writes buffered records to the file. On failure they are forgotten.
  bool Flush(IoError* error);
  // Flush, then fdatasync: every record appended so far survives a crash.
  // On failure every record since the last Sync is forgotten.
  bool Sync(IoError* error);
  // The same for a caller that has already counted written records as safe
  // (fsync=never): a failed fdatasync cuts nothing off, it only leaves
  // synced_end() where it was.
  bool SyncWritten(IoError* error);
  // Deletes segments that hold only positions below `position`.
  bool DropBefore(uint64_t position, IoError* error);

  // The position the next record will get.
  uint64_t end() const { return segments_.back().base + segments_.back().size; }
  // Every record that ends at or before this survives a crash.
  uint64_t synced_end() const { return segments_.back().base + synced_; }
  // Every record that ends at or before this is in the file (survives the
  // process, not the machine).
  uint64_t written_end() const { return segments_.back().base + written_; }
  size_t segments() const { return segments_.size(); }

 private:
  struct Segment {
    uint64_t base;
    uint64_t size;
  };
  // A new segment file, its header durable, ready for appending.
  struct NewSegment {
    int fd = -1;
    uint64_t salt = 0;
  };
  SegmentedLog(std::string dir, LogOptions options);
  std::string PathOf(uint64_t base) const;
  // The errno a test's fault hook chooses for this call, or 0.
  int Injected(FileOp op, const std::string& path) const;
  // Creates the segment file for `base`; `replace` lets it overwrite a torn
  // one. On failure nothing of it is left.
  bool CreateSegment(uint64_t base, bool replace, NewSegment* out, IoError* error);
  // Removes the empty files a failed roll can leave inside the log.
  bool RemoveLeftovers(std::vector<SegmentFile>* files, ReplayReport* report, IoError* error);
  // Makes the log appendable after replay, by what its last segment held.
  bool StartTail(SegmentReplay tail, IoError* error);
  // Opens the replayed last segment for appending, cutting it to `good_end`.
  bool AdoptTail(uint64_t base, uint64_t good_end, uint64_t salt, IoError* error);
  // Creates the segment for `base` and makes it the tail.
  bool UseNewSegment(uint64_t base, bool replace, IoError* error);
  void Become(uint64_t base, NewSegment next);
  // Starts the next segment at end(); false if the records buffered so far
  // were lost (`*created` false: the current segment is intact and stays
  // the tail).
  bool Roll(bool* created, IoError* error);
  // fdatasync of the tail; on success synced_ catches up with written_.
  bool DataSync(IoError* error);
  // Cuts the tail segment back to `size` bytes and forgets the rest.
  void CutBack(uint64_t size);

  const std::string dir_;
  const LogOptions options_;
  std::vector<Segment> segments_;  // by base; the last one is written
  int fd_ = -1;                    // the last segment
  uint64_t salt_ = 0;              // the last segment's
  std::string buffer_;             // appended, not yet written
  uint64_t written_ = 0;           // bytes of the tail segment in its file
  uint64_t synced_ = 0;            // of those, made durable
  // The tail holds bytes that are not records (a failed write could not be
  // cut off): nothing more may follow them in this segment.
  bool must_roll_ = false;
};

}  // namespace basin::storage
