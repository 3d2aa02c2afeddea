#include "broker/storage/segmented_log.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstring>

#include "broker/storage/record_format.h"
#include "broker/storage/segment_replay.h"

namespace basin::storage {
namespace {

bool Fail(IoError* error, const std::string& what, int err = errno) {
  if (error != nullptr) *error = {what + ": " + std::strerror(err), err};
  return false;
}

// A refusal that is not a failed system call.
bool Refuse(IoError* error, std::string why, int err) {
  if (error != nullptr) *error = {std::move(why), err, true};
  return false;
}

std::string SegmentName(uint64_t base) {
  char name[32];
  std::snprintf(name, sizeof name, "%020llu.log", static_cast<unsigned long long>(base));
  return name;
}

// The base a segment's file name gives, or nullopt if `name` is not one
// SegmentName makes (20 digits can exceed 2^64).
std::optional<uint64_t> ParseSegmentName(std::string_view name) {
  constexpr size_t kDigits = 20;
  if (name.size() != kDigits + 4 || !name.ends_with(".log")) return std::nullopt;
  const char* first = name.data();
  const char* last = first + kDigits;
  if (!std::all_of(first, last, [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  uint64_t base = 0;
  const auto [end, ec] = std::from_chars(first, last, base);
  if (ec != std::errc() || end != last) return std::nullopt;
  return base;
}

uint64_t NewSalt() {
  uint64_t salt = 0;
  if (::getrandom(&salt, sizeof salt, GRND_NONBLOCK) == static_cast<ssize_t>(sizeof salt)) {
    return salt;
  }
  // No entropy yet (early boot): what matters is that nobody outside can
  // predict it, which the time to the nanosecond and the pid cover well enough.
  return static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
         static_cast<uint64_t>(::getpid()) << 40;
}

// Writes zeros over bytes [from, to) of `fd`; 0 or an errno. The tail is
// opened O_APPEND, and for such a file Linux's pwrite ignores its offset and
// appends: the flag is lifted for the write.
int WriteZeros(int fd, uint64_t from, uint64_t to) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_APPEND) != 0) return errno;
  static const char kZeros[64 << 10] = {};
  int err = 0;
  for (uint64_t at = from; at < to;) {
    const ssize_t n =
        ::pwrite(fd, kZeros, std::min<uint64_t>(sizeof kZeros, to - at), static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err = n < 0 ? errno : EIO;
      break;
    }
    at += static_cast<uint64_t>(n);
  }
  // Nothing more is written through this fd (the bytes end their segment:
  // must_roll_), so a flag that does not come back costs nothing; the file
  // offset is still its end in any case.
  ::fcntl(fd, F_SETFL, flags);
  return err;
}

bool WriteAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

// A segment file as the directory lists it.
struct SegmentFile {
  uint64_t base;
  uint64_t size;
};

namespace {

// The segment files in `dir` by base, with their sizes; what is named like a
// segment and is not one goes into report->ignored.
bool ListSegments(const std::string& dir, std::vector<SegmentFile>* files, ReplayReport* report,
                  IoError* error) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return Fail(error, "opendir " + dir);
  while (const dirent* e = ::readdir(d)) {
    const std::string_view name = e->d_name;
    if (!name.ends_with(".log")) continue;
    const auto base = ParseSegmentName(name);
    struct stat st {};
    if (!base || ::fstatat(::dirfd(d), e->d_name, &st, 0) != 0 || !S_ISREG(st.st_mode) ||
        *base >= kMaxLogPosition || static_cast<uint64_t>(st.st_size) >= kMaxLogPosition - *base) {
      report->ignored.emplace_back(name);
      continue;
    }
    files->push_back({*base, static_cast<uint64_t>(st.st_size)});
  }
  ::closedir(d);
  std::sort(report->ignored.begin(), report->ignored.end());
  std::sort(files->begin(), files->end(),
            [](const SegmentFile& a, const SegmentFile& b) { return a.base < b.base; });
  return true;
}

}  // namespace

bool SyncDir(const std::string& dir, IoError* error) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Fail(error, "open " + dir);
  const bool ok = ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  return ok || Fail(error, "fsync " + dir, err);
}

SegmentedLog::SegmentedLog(std::string dir, LogOptions options)
    : dir_(std::move(dir)), options_(std::move(options)) {}

SegmentedLog::~SegmentedLog() {
  IoError ignored;
  Flush(&ignored);
  if (fd_ >= 0) ::close(fd_);
  segments_.clear();
  CountSegments();
}

void SegmentedLog::CountSegments() {
  if (options_.counters == nullptr) return;
  const auto now = static_cast<int64_t>(segments_.size());
  options_.counters->segments.fetch_add(now - counted_segments_, std::memory_order_relaxed);
  counted_segments_ = now;
}

int SegmentedLog::TimedDataSync(int fd) {
  const auto start = std::chrono::steady_clock::now();
  const int err = ::fdatasync(fd) == 0 ? 0 : errno;
  if (options_.counters != nullptr) {
    options_.counters->fsync.Observe(std::chrono::steady_clock::now() - start);
  }
  return err;
}

std::string SegmentedLog::PathOf(uint64_t base) const { return dir_ + "/" + SegmentName(base); }

int SegmentedLog::Injected(FileOp op, const std::string& path) const {
  return options_.faults ? options_.faults(op, path) : 0;
}

std::unique_ptr<SegmentedLog> SegmentedLog::Open(const std::string& dir, const LogOptions& options,
                                                 const Visitor& visit, ReplayReport* report,
                                                 IoError* error) {
  if (::mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST) {
    Fail(error, "mkdir " + dir);
    return nullptr;
  }
  ReplayReport local;
  ReplayReport& r = report != nullptr ? *report : local;
  std::unique_ptr<SegmentedLog> log(new SegmentedLog(dir, options));
  std::vector<SegmentFile> files;
  if (!ListSegments(dir, &files, &r, error) || !log->RemoveLeftovers(&files, &r, error)) {
    return nullptr;
  }
  SegmentReplay tail;
  for (size_t s = 0; s < files.size(); ++s) {
    const bool last = s + 1 == files.size();
    const std::string name = SegmentName(files[s].base);
    SegmentReplay replay;
    if (!ReplaySegment(dir, name, files[s].base, last, options.faults, visit, &r, &replay, error)) {
      return nullptr;
    }
    if (replay.start == SegmentStart::kNewer) {
      Refuse(error, dir + "/" + name + " is of a later log format than this basind reads", EPROTO);
      return nullptr;
    }
    ++r.segments;
    log->segments_.push_back({files[s].base, replay.size});
    if (last) tail = replay;
  }
  if (!log->StartTail(tail, error)) return nullptr;
  log->CountSegments();
  return log;
}

bool SegmentedLog::RemoveLeftovers(std::vector<SegmentFile>* files, ReplayReport* report,
                                   IoError* error) {
  // A roll that failed after creating its file removes it again, but a crash
  // can undo the removal, and the log then grew past where that file starts.
  // Holding no record (a header at most), it is provably empty.
  for (size_t s = 1; s < files->size();) {
    const SegmentFile& before = (*files)[s - 1];
    const SegmentFile& file = (*files)[s];
    if (file.base >= before.base + before.size) {
      ++s;
      continue;
    }
    const std::string name = SegmentName(file.base);
    if (file.size > kSegmentHeaderBytes) {
      return Refuse(error, dir_ + ": segment " + name + " starts inside the one before it", EINVAL);
    }
    const std::string path = PathOf(file.base);
    const int err = Injected(FileOp::kUnlink, path);
    if (err != 0 || ::unlink(path.c_str()) != 0) {
      return Fail(error, "unlink " + path, err != 0 ? err : errno);
    }
    report->removed.push_back(name);
    files->erase(files->begin() + static_cast<ptrdiff_t>(s));
  }
  return true;
}

bool SegmentedLog::StartTail(SegmentReplay tail, IoError* error) {
  if (segments_.empty()) return UseNewSegment(0, false, error);
  Segment& last = segments_.back();
  // A format-1 tail without a single good record is a torn one.
  if (tail.start == SegmentStart::kFormat1 && tail.good_end == 0) tail.start = SegmentStart::kTorn;
  switch (tail.start) {
    case SegmentStart::kFormat2:
      return AdoptTail(last.base, tail.good_end, tail.salt, error);
    case SegmentStart::kTorn:
      // Created, and the crash came before its header (or first record) was
      // durable: nothing in it to keep.
      {
        const uint64_t base = last.base;
        segments_.pop_back();
        return UseNewSegment(base, true, error);
      }
    case SegmentStart::kFormat1:
      // Its torn tail is cut off, then it is sealed: format-2 records follow
      // in a segment of their own.
      if (tail.good_end < tail.size) {
        const std::string path = PathOf(last.base);
        const int err = Injected(FileOp::kTruncate, path);
        if (err != 0 || ::truncate(path.c_str(), static_cast<off_t>(tail.good_end)) != 0) {
          return Fail(error, "truncate " + path, err != 0 ? err : errno);
        }
        last.size = tail.good_end;
      }
      return UseNewSegment(end(), false, error);
    case SegmentStart::kUnreadable:
      // Left as it is, for someone to look at; the log goes on after it.
      return UseNewSegment(end(), false, error);
    case SegmentStart::kNewer:
      break;  // Open refuses the log before this
  }
  return false;
}

bool SegmentedLog::UseNewSegment(uint64_t base, bool replace, IoError* error) {
  NewSegment next;
  if (!CreateSegment(base, replace, &next, error)) return false;
  Become(base, next);
  return true;
}

void SegmentedLog::Become(uint64_t base, NewSegment next) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = next.fd;
  salt_ = next.salt;
  segments_.push_back({base, kSegmentHeaderBytes});
  CountSegments();
  written_ = synced_ = kSegmentHeaderBytes;
  must_roll_ = false;
  unerased_ = false;
}

bool SegmentedLog::AdoptTail(uint64_t base, uint64_t good_end, uint64_t salt, IoError* error) {
  const std::string path = PathOf(base);
  fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd_ < 0) return Fail(error, "open " + path);
  if (good_end < segments_.back().size) {
    const int err = Injected(FileOp::kTruncate, path);
    if (err != 0 || ::ftruncate(fd_, static_cast<off_t>(good_end)) != 0) {
      return Fail(error, "truncate " + path, err != 0 ? err : errno);
    }
  }
  // What replay read may still be only in the page cache (the broker was
  // killed, the machine was not): synced_ must not count it before it is
  // durable. The cut, too.
  const int err = Injected(FileOp::kSync, path);
  if (err != 0) return Fail(error, "fdatasync " + path, err);
  if (const int sync_err = TimedDataSync(fd_)) return Fail(error, "fdatasync " + path, sync_err);
  salt_ = salt;
  segments_.back().size = good_end;
  written_ = synced_ = good_end;
  return true;
}

bool SegmentedLog::CreateSegment(uint64_t base, bool replace, NewSegment* out, IoError* error) {
  const std::string path = PathOf(base);
  if (const int err = Injected(FileOp::kCreate, path)) return Fail(error, "create " + path, err);
  const int flags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | (replace ? O_TRUNC : O_EXCL);
  const int fd = ::open(path.c_str(), flags, 0640);
  if (fd < 0) return Fail(error, "create " + path);
  const auto give_up = [&](const std::string& what, int err) {
    ::close(fd);
    // It holds no record; left behind, it would be a segment starting where
    // the log may go on growing.
    if (!replace) ::unlink(path.c_str());
    return Fail(error, what, err);
  };
  const uint64_t salt = NewSalt();
  if (!WriteAll(fd, EncodeSegmentHeader({base, salt}))) return give_up("write " + path, errno);
  // The header is durable before any record follows it, so a crash leaves
  // either no file, a torn header (rewritten at open) or a segment that reads.
  int err = Injected(FileOp::kSync, path);
  if (err == 0) err = TimedDataSync(fd);
  if (err != 0) return give_up("fdatasync " + path, err);
  // The new name must survive a crash too, or its records vanish.
  err = Injected(FileOp::kSyncDir, dir_);
  IoError dir_error;
  if (err != 0 || !SyncDir(dir_, &dir_error)) {
    return give_up("fsync " + dir_, err != 0 ? err : dir_error.error);
  }
  *out = {fd, salt};
  return true;
}

std::optional<uint64_t> SegmentedLog::Append(uint8_t type, std::string_view body, IoError* error) {
  const LogRecord record{type, body};
  return Append(std::span(&record, 1), error);
}

std::optional<uint64_t> SegmentedLog::Append(std::span<const LogRecord> group, IoError* error) {
  uint64_t bytes = 0;
  for (const LogRecord& r : group) {
    if (r.body.size() >= kMaxRecordLength) {
      Fail(error,
           "append to " + dir_ + ": a record of " + std::to_string(RecordBytes(r.body.size())) +
               " bytes",
           EFBIG);
      ForgetBuffered();
      return std::nullopt;
    }
    bytes += RecordBytes(r.body.size());
  }
  if (!MakeRoom(bytes, error)) return std::nullopt;
  const uint64_t first = end();
  for (const LogRecord& r : group) {
    EncodeRecord(buffer_, salt_, end(), r.type, r.body);
    segments_.back().size += RecordBytes(r.body.size());
  }
  return first;
}

bool SegmentedLog::MakeRoom(uint64_t bytes, IoError* error) {
  if (!EraseRefused(error)) {
    ForgetBuffered();
    return false;
  }
  const uint64_t size = segments_.back().size;
  if (!must_roll_ && (size <= kSegmentHeaderBytes || size + bytes <= options_.max_segment_bytes)) {
    return true;
  }
  bool created = false;
  if (!Roll(&created, error)) return false;
  // Not created (EMFILE, ENOSPC; or not tried, a roll having failed less
  // than roll_retry ago): the group goes into this segment, past its size,
  // and a later append tries again. Unless bytes that are not records end
  // it: nothing may follow those.
  if (!created && must_roll_) {
    if (error != nullptr) *error = roll_error_;
    ForgetBuffered();
    return false;
  }
  return true;
}

bool SegmentedLog::Roll(bool* created, IoError* error) {
  *created = false;
  if (Now() < retry_roll_at_) return true;
  const uint64_t base = end();
  // The next segment is made before the current one is touched, so that if
  // it cannot be, the current one is intact and stays the tail.
  NewSegment next;
  if (!CreateSegment(base, false, &next, &roll_error_)) {
    retry_roll_at_ = Now() + options_.roll_retry;
    return true;
  }
  retry_roll_at_ = {};
  // What is buffered belongs to the current segment. If it cannot be made
  // durable it is forgotten (unless it was answered once written), and the
  // new file starts past the log's end.
  if (!(answer_when_written_ ? SyncWritten(&roll_error_) : Sync(&roll_error_))) {
    ::close(next.fd);
    RemoveAbandoned(base);
    // A failing fdatasync (under `never` the usual way a roll fails) tends
    // to fail again: without a wait, every append that needs the roll would
    // pay for another create, header write, two fsyncs and unlink.
    retry_roll_at_ = Now() + options_.roll_retry;
    if (error != nullptr) *error = roll_error_;
    return false;
  }
  Become(base, next);
  *created = true;
  return true;
}

void SegmentedLog::RemoveAbandoned(uint64_t base) {
  const std::string path = PathOf(base);
  int err = Injected(FileOp::kUnlink, path);
  if (err == 0 && ::unlink(path.c_str()) != 0) err = errno;
  // The directory is synced, so that a crash cannot bring the name back:
  // left, the file would be a segment past the log's end, its header the
  // start of the tail after a gap, and the segment before it would be taken
  // for a sealed one (a torn end there then reads as damage, not a torn
  // write). If the unlink or the sync fails, recovery still copes: once the
  // log has grown past the file's base it is provably empty and removed
  // (RemoveLeftovers), and before that it is an empty tail.
  if (err == 0 && Injected(FileOp::kSyncDir, dir_) == 0) SyncDir(dir_, nullptr);
}

std::chrono::steady_clock::time_point SegmentedLog::Now() const {
  return options_.clock ? options_.clock() : std::chrono::steady_clock::now();
}

void SegmentedLog::ForgetBuffered() {
  buffer_.clear();
  segments_.back().size = written_;
}

bool SegmentedLog::Flush(IoError* error) {
  const std::string_view pending = buffer_;
  for (size_t done = 0; done < pending.size();) {
    int err = Injected(FileOp::kWrite, PathOf(segments_.back().base));
    ssize_t n = 0;
    if (err == 0) {
      n = ::write(fd_, pending.data() + done, pending.size() - done);
      if (n < 0) err = errno;
    }
    if (err == EINTR) continue;
    if (err != 0) {
      Fail(error, "write " + PathOf(segments_.back().base), err);
      CutBack(written_);
      return false;
    }
    done += static_cast<size_t>(n);
  }
  if (options_.counters != nullptr) {
    options_.counters->bytes_written.fetch_add(buffer_.size(), std::memory_order_relaxed);
  }
  written_ += buffer_.size();
  buffer_.clear();
  return true;
}

bool SegmentedLog::Sync(IoError* error) {
  if (!Flush(error)) return false;
  if (DataSync(error)) return true;
  // What the kernel did with the unsynced pages is unknown: cut them off
  // rather than trust them.
  CutBack(synced_);
  return false;
}

bool SegmentedLog::SyncWritten(IoError* error) { return Flush(error) && DataSync(error); }

bool SegmentedLog::DataSync(IoError* error) {
  if (synced_ == written_) return true;
  if (!EraseRefused(error)) return false;
  const std::string path = PathOf(segments_.back().base);
  int err = Injected(FileOp::kSync, path);
  if (err == 0) err = TimedDataSync(fd_);
  if (err != 0) return Fail(error, "fdatasync " + path, err);
  synced_ = written_;
  return true;
}

void SegmentedLog::CutBack(uint64_t size) {
  buffer_.clear();
  const int err = Injected(FileOp::kTruncate, PathOf(segments_.back().base));
  if (err != 0 || ::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
    // The bytes stay. Replay would take them for a torn write and cut off
    // whatever followed them, so nothing more goes into this segment. Positions
    // must match the file, so count them; but they hold no record any more.
    const off_t actual = ::lseek(fd_, 0, SEEK_END);
    if (actual < 0 || static_cast<uint64_t>(actual) > size) {
      stray_from_ = must_roll_ ? std::min(stray_from_, size) : size;
      must_roll_ = true;
      // Whole records among them would verify at replay (skipped past as
      // damage, never cut as a torn write once the log goes on after them),
      // and the next roll's sync would make them durable: a batch its
      // caller was told had failed would come back after a restart. Zeros
      // cannot verify.
      unerased_ = true;
    }
    if (actual > 0) size = static_cast<uint64_t>(actual);
  }
  written_ = size;
  synced_ = std::min(synced_, size);
  segments_.back().size = size;
  EraseRefused(nullptr);
}

bool SegmentedLog::EraseRefused(IoError* error) {
  if (!unerased_) return true;
  if (stray_from_ < written_) {
    const std::string path = PathOf(segments_.back().base);
    int err = Injected(FileOp::kErase, path);
    if (err == 0) err = WriteZeros(fd_, stray_from_, written_);
    if (err != 0) {
      return Fail(error,
                  "overwrite refused records at offset " + std::to_string(stray_from_) + " of " +
                      path + " that a failed cut left",
                  err);
    }
  }
  unerased_ = false;
  return true;
}

bool SegmentedLog::DropBefore(uint64_t position, IoError* error) {
  // Never the last segment: it is being written.
  while (segments_.size() > 1 && segments_[1].base <= position) {
    const std::string path = PathOf(segments_.front().base);
    int err = Injected(FileOp::kUnlink, path);
    if (err == 0 && ::unlink(path.c_str()) != 0 && errno != ENOENT) err = errno;
    if (err != 0) return Fail(error, "unlink " + path, err);
    segments_.erase(segments_.begin());
    CountSegments();
  }
  return true;
}

}  // namespace basin::storage
