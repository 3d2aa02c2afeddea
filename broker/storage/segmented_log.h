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
// made safe (if the cut fails, overwrites them with zeros and goes on in a
// new segment), so the log never holds half a batch and the next append
// (once space returns) follows intact records; synced_end() then tells the
// caller which of its records are durable. Records are appended in groups that
// share one segment (a put batch is answered as one). Not thread-safe: one
// owner.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "broker/storage/storage_counters.h"

namespace basin::storage {

struct SegmentFile;
struct SegmentReplay;

// The system calls on a log's files that tests make fail, for
// LogOptions::faults.
enum class FileOp {
  kCreate,    // a new segment file: open, header, fdatasync (then kSyncDir)
  kWrite,     // buffered records written to the tail
  kSync,      // fdatasync of the tail (also of a new segment's header)
  kTruncate,  // a torn tail or a failed write cut off
  kErase,     // refused records that could not be cut off overwritten with zeros
  kUnlink,    // a segment dropped, or a failed roll's file removed
  kSyncDir,   // the directory, after a file was created or a failed roll's removed
  kRead,      // a read of a segment at replay (a bad sector: EIO)
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
  // After a roll failed — the next segment could not be created (EMFILE,
  // ENOSPC), or the current one could not be synced — rolls are not tried
  // again before this has passed: a retry at every append would cost a
  // failing open (or a create, header write, fdatasyncs and unlink) per
  // record while the limit, the full disk or the failing disk lasts.
  std::chrono::milliseconds roll_retry = std::chrono::seconds(1);
  // The time roll_retry is measured with; empty: steady_clock. Tests set it,
  // so that they pass time without sleeping.
  std::function<std::chrono::steady_clock::time_point()> clock = nullptr;
  // Where segment counts, bytes written and fdatasync latencies are added
  // up (null: nowhere); shared by all logs of a data directory.
  std::shared_ptr<StorageCounters> counters = nullptr;
};

// A record to append.
struct LogRecord {
  uint8_t type;
  std::string_view body;
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
  // Not a failed system call but the log's contents (a later format, a
  // segment inside another): trying again cannot help, nor can an operator
  // by raising a limit or freeing space.
  bool refused = false;
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

  // Buffers a group of records in one segment and returns the position of
  // the first. Rolls to a new segment first when the group does not fit in
  // the current one; the roll syncs the records buffered so far into the
  // old segment. Never between two records of a group: a put batch is
  // answered as one, and split by a roll, a batch whose later records failed
  // would come back in part after a restart although it was refused. So a
  // segment can pass max_segment_bytes by one group. If the new segment
  // cannot be created (EMFILE, ENOSPC) the group goes into the current one
  // and the roll is tried again at an append once options.roll_retry has
  // passed; the same after a roll whose sync failed (the append that met
  // that failure is refused). Null if the group cannot be taken: then the records buffered
  // since the last Flush are forgotten — and if it was the roll's sync that
  // failed, what that sync forgets too: under Sync every record since the
  // last Sync, written or not; after AnswerWhenWritten nothing written.
  // synced_end() says which are safe. Also null, at once, while records a
  // failed cut left in the file cannot be erased (see CutBack).
  std::optional<uint64_t> Append(std::span<const LogRecord> group, IoError* error);
  // A group of one.
  std::optional<uint64_t> Append(uint8_t type, std::string_view body, IoError* error);
  // Writes buffered records to the file. On failure they are forgotten.
  bool Flush(IoError* error);
  // Flush, then fdatasync: every record appended so far survives a crash.
  // On failure every record since the last Sync is forgotten. Fails too
  // while refused records a failed cut left cannot be erased: syncing would
  // make them durable.
  bool Sync(IoError* error);
  // The same for a caller that has already counted written records as safe
  // (fsync=never): a failed fdatasync cuts nothing off, it only leaves
  // synced_end() where it was.
  bool SyncWritten(IoError* error);
  // For such a caller, from now on: the sync of a roll is a SyncWritten too.
  // It answered the records once they were written, so a failed fdatasync
  // at a roll must not cut them off; the roll fails, the records stay.
  void AnswerWhenWritten() { answer_when_written_ = true; }
  // Deletes segments that hold only positions below `position`.
  bool DropBefore(uint64_t position, IoError* error);

  // The position the next record will get.
  uint64_t end() const { return segments_.back().base + segments_.back().size; }
  // Every record that ends at or before this survives a crash.
  uint64_t synced_end() const { return segments_.back().base + RecordsUpTo(synced_); }
  // Every record that ends at or before this is in the file (survives the
  // process, not the machine).
  uint64_t written_end() const { return segments_.back().base + RecordsUpTo(written_); }
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
  // `offset` of the tail, short of the bytes a failed cut left: they are no
  // records (the records a failed write or sync left there are refused, and
  // erased).
  uint64_t RecordsUpTo(uint64_t offset) const {
    return must_roll_ ? std::min(offset, stray_from_) : offset;
  }
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
  // Rolls first if a group of `bytes` does not fit in the tail; false if the
  // group cannot be taken.
  bool MakeRoom(uint64_t bytes, IoError* error);
  // Starts the next segment at end(); false if the records buffered so far
  // could not be made safe (`*created` false: the current segment stays the
  // tail, also when the roll is not tried before retry_roll_at_).
  bool Roll(bool* created, IoError* error);
  // Removes the file of a roll that did not happen (it holds only a header).
  void RemoveAbandoned(uint64_t base);
  std::chrono::steady_clock::time_point Now() const;
  // Forgets the records buffered since the last Flush.
  void ForgetBuffered();
  // fdatasync of the tail; on success synced_ catches up with written_.
  bool DataSync(IoError* error);
  // Cuts the tail segment back to `size` bytes and forgets the rest. If the
  // cut fails, the bytes past `size` stay in the file, and whole records
  // among them would verify at replay — records their callers were told
  // failed — so they are overwritten with zeros; if that fails too they are
  // left to EraseRefused.
  void CutBack(uint64_t size);
  // Overwrites the tail's bytes from stray_from_ on with zeros if a failed
  // cut left refused records there; false (with the error) while it cannot.
  // Until it can, appends and syncs fail: a sync would make those records
  // durable, and the log answering later records as if all were well would
  // hide that a restart brings back records that were refused.
  bool EraseRefused(IoError* error);
  // fdatasync(fd), timed into options_.counters; 0 or the errno.
  int TimedDataSync(int fd);
  // Brings options_.counters->segments up to date with segments_.
  void CountSegments();

  const std::string dir_;
  const LogOptions options_;
  std::vector<Segment> segments_;  // by base; the last one is written
  int fd_ = -1;                    // the last segment
  uint64_t salt_ = 0;              // the last segment's
  std::string buffer_;             // appended, not yet written
  uint64_t written_ = 0;           // bytes of the tail segment in its file
  uint64_t synced_ = 0;            // of those, made durable
  // The tail holds bytes that are not records from stray_from_ on (a failed
  // write could not be cut off): nothing more may follow them in this
  // segment, and they count as neither written nor synced.
  bool must_roll_ = false;
  uint64_t stray_from_ = 0;
  // Those bytes may still hold refused records: not yet overwritten.
  bool unerased_ = false;
  bool answer_when_written_ = false;
  // A failed roll: no roll is tried before then, and while must_roll_
  // holds, appends fail at once with the roll's error.
  std::chrono::steady_clock::time_point retry_roll_at_{};
  IoError roll_error_;
  int64_t counted_segments_ = 0;  // what CountSegments last added
};

}  // namespace basin::storage
