#include "broker/storage/segment_replay.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace basin::storage {
namespace {

bool Fail(IoError* error, const std::string& what, int err) {
  if (error != nullptr) *error = {what + ": " + std::strerror(err), err};
  return false;
}

// A window onto a file: the bytes at an offset, read as they are needed, so
// a segment's size never decides an allocation (only a record whose header
// verified does, and kMaxRecordLength bounds that).
class FileWindow {
 public:
  // `faults` (tests only) may fail each read, as a bad sector would.
  FileWindow(int fd, uint64_t size, const FaultHook& faults, const std::string& path)
      : fd_(fd), size_(size), faults_(faults), path_(path) {}

  // `n` bytes at `offset`, valid until the next call; false if the file ends
  // first, or cannot be read (then error() is set).
  bool Get(uint64_t offset, size_t n, std::string_view* out) {
    if (offset > size_ || n > size_ - offset) return false;
    if (offset < start_ || offset - start_ + n > buffer_.size()) {
      if (!Fill(offset, n)) return false;
    }
    *out = std::string_view(buffer_.data() + (offset - start_), n);
    return true;
  }
  int error() const { return error_; }

 private:
  static constexpr uint64_t kWindow = 1 << 20;

  bool Fill(uint64_t offset, size_t n) {
    const auto want = static_cast<size_t>(std::max<uint64_t>(n, std::min(kWindow, size_ - offset)));
    // After a large record, give its memory back.
    if (want <= kWindow && buffer_.capacity() > 4 * kWindow) std::string().swap(buffer_);
    buffer_.resize(want);
    start_ = offset;
    for (size_t done = 0; done < want;) {
      if (const int err = faults_ ? faults_(FileOp::kRead, path_) : 0) {
        error_ = err;
        buffer_.clear();
        return false;
      }
      const ssize_t r =
          ::pread(fd_, buffer_.data() + done, want - done, static_cast<off_t>(offset + done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        error_ = r < 0 ? errno : EIO;  // 0: the file shrank while being read
        buffer_.clear();
        return false;
      }
      done += static_cast<size_t>(r);
    }
    return true;
  }

  const int fd_;
  const uint64_t size_;
  const FaultHook& faults_;
  const std::string& path_;
  std::string buffer_;
  uint64_t start_ = 0;
  int error_ = 0;
};

// The bytes a format-2 record at `at` takes if one verifies there (0 if not),
// with its type and body.
uint64_t Format2RecordAt(FileWindow& file, const SegmentHeader& segment, uint64_t at,
                         uint64_t* checked, std::string_view* type_and_body) {
  std::string_view view;
  if (!file.Get(at, kRecordHeaderBytes, &view)) return 0;
  char header[kRecordHeaderBytes];  // the body's read may move the window
  std::memcpy(header, view.data(), sizeof header);
  const std::string_view h(header, sizeof header);
  const uint32_t length = CheckRecordHeader(h, segment.salt, segment.base + at, checked);
  if (length == 0 || !file.Get(at + kRecordHeaderBytes, length, type_and_body)) return 0;
  if (!CheckRecordBody(h, *type_and_body, checked)) return 0;
  return kRecordHeaderBytes + length;
}

uint64_t Format1RecordAt(FileWindow& file, uint64_t at, uint64_t* checked,
                         std::string_view* type_and_body) {
  std::string_view view;
  if (!file.Get(at, kFormat1HeaderBytes, &view)) return 0;
  char header[kFormat1HeaderBytes];
  std::memcpy(header, view.data(), sizeof header);
  const std::string_view h(header, sizeof header);
  const uint32_t length = Format1Length(h);
  if (length == 0 || !file.Get(at + kFormat1HeaderBytes, length, type_and_body)) return 0;
  if (!CheckFormat1Body(h, *type_and_body, checked)) return 0;
  return kFormat1HeaderBytes + length;
}

class Replayer {
 public:
  Replayer(FileWindow& file, const std::string& name, uint64_t base, bool tail,
           const SegmentedLog::Visitor& visit, ReplayReport& report, SegmentReplay& out)
      : file_(file),
        name_(name),
        base_(base),
        tail_(tail),
        visit_(visit),
        report_(report),
        out_(out) {}

  void Run() {
    std::string_view start;
    if (out_.size == 0) return;  // created, never written: nothing to say
    if (!file_.Get(0, std::min<uint64_t>(out_.size, kSegmentHeaderBytes), &start)) return;
    SegmentHeader header;
    out_.start = CheckSegmentStart(start, &header);
    // A header for another position: a file renamed or copied by hand. Its
    // records cannot verify here.
    if (out_.start == SegmentStart::kFormat2 && header.base != base_) {
      out_.start = SegmentStart::kUnreadable;
    }
    switch (out_.start) {
      case SegmentStart::kFormat2:
        out_.salt = header.salt;
        Format2(header);
        return;
      case SegmentStart::kFormat1:
        Format1();
        return;
      case SegmentStart::kTorn:
        // Only a crash while creating the tail leaves this; the log rewrites it.
        Damaged(0, tail_);
        return;
      case SegmentStart::kUnreadable:
        Damaged(0, false);
        return;
      case SegmentStart::kNewer:
        return;  // not this broker's to judge: the log refuses to open
    }
  }

 private:
  void Format2(const SegmentHeader& header) {
    constexpr uint64_t kIntact = UINT64_MAX;
    uint64_t at = kSegmentHeaderBytes;
    uint64_t damage_from = kIntact;
    out_.good_end = at;
    while (at < out_.size) {
      std::string_view record;
      if (const uint64_t n = Format2RecordAt(file_, header, at, &report_.checked_bytes, &record)) {
        if (damage_from != kIntact) {
          report_.damage.push_back({name_, damage_from, at - damage_from, false});
          damage_from = kIntact;
        }
        Visit(at, record);
        at += n;
        out_.good_end = at;
        continue;
      }
      if (file_.error() != 0) return;
      // Look for the next record written where it stands, in the tail too:
      // whether this is a torn write is known only at the end.
      if (damage_from == kIntact) damage_from = at;
      ++at;
    }
    if (damage_from == kIntact) return;
    // Nothing verifies after it: in the tail, taken for a torn write, which
    // the log cuts off (good_end is where it starts). Damage with a record
    // that verifies after it was skipped above, wherever it is: cutting there
    // would drop that record, perhaps one answered long ago.
    report_.damage.push_back({name_, damage_from, at - damage_from, tail_});
  }

  // Format-1 CRCs do not bind a position, so after damage nothing in the
  // segment can be told from a payload's bytes.
  void Format1() {
    uint64_t at = 0;
    while (at < out_.size) {
      std::string_view record;
      const uint64_t n = Format1RecordAt(file_, at, &report_.checked_bytes, &record);
      if (n == 0) {
        if (file_.error() == 0) Damaged(at, tail_);
        return;
      }
      Visit(at, record);
      at += n;
      out_.good_end = at;
    }
  }

  void Visit(uint64_t at, std::string_view type_and_body) {
    visit_(base_ + at, static_cast<uint8_t>(type_and_body[0]), type_and_body.substr(1));
    ++report_.records;
  }

  // The rest of the segment from `at`, cut off by the log if `truncated`.
  void Damaged(uint64_t at, bool truncated) {
    report_.damage.push_back({name_, at, out_.size - at, truncated});
  }

  FileWindow& file_;
  const std::string& name_;
  const uint64_t base_;
  const bool tail_;
  const SegmentedLog::Visitor& visit_;
  ReplayReport& report_;
  SegmentReplay& out_;
};

}  // namespace

bool ReplaySegment(const std::string& dir, const std::string& name, uint64_t base, bool tail,
                   const FaultHook& faults, const SegmentedLog::Visitor& visit,
                   ReplayReport* report, SegmentReplay* out, IoError* error) {
  const std::string path = dir + "/" + name;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Fail(error, "open " + path, errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return Fail(error, "stat " + path, err);
  }
  *out = SegmentReplay{};
  out->size = static_cast<uint64_t>(st.st_size);
  FileWindow file(fd, out->size, faults, path);
  Replayer(file, name, base, tail, visit, *report, *out).Run();
  ::close(fd);
  if (file.error() != 0) return Fail(error, "read " + path, file.error());
  return true;
}

}  // namespace basin::storage
