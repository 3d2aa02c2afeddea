#include "broker/storage/segmented_log.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "broker/storage/crc32c.h"

namespace basin::storage {
namespace {

constexpr uint32_t kMagic = 0xB45171A5;
constexpr size_t kHeader = 12;  // magic, length, crc; the type byte is in length
// A length above this is damage, not a record: no record is larger than a
// segment, and the broker's message limit is far below it.
constexpr uint32_t kMaxRecord = 1u << 30;

void Put32(std::string& out, uint32_t v) {
  const char b[4] = {static_cast<char>(v), static_cast<char>(v >> 8), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 24)};
  out.append(b, 4);
}

uint32_t Get32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint32_t>(u[0]) | static_cast<uint32_t>(u[1]) << 8 |
         static_cast<uint32_t>(u[2]) << 16 | static_cast<uint32_t>(u[3]) << 24;
}

bool Fail(IoError* error, const std::string& what) {
  if (error != nullptr) *error = {what + ": " + std::strerror(errno), errno};
  return false;
}

std::string SegmentName(uint64_t base) {
  char name[32];
  std::snprintf(name, sizeof name, "%020llu.log", static_cast<unsigned long long>(base));
  return name;
}

// The length of a valid record at data[at], or 0.
size_t RecordAt(const std::string& data, size_t at) {
  if (data.size() - at < kHeader + 1) return 0;
  if (Get32(&data[at]) != kMagic) return 0;
  const uint32_t length = Get32(&data[at + 4]);
  if (length == 0 || length > kMaxRecord || data.size() - at - kHeader < length) return 0;
  if (Crc32c(&data[at + kHeader], length) != Get32(&data[at + 8])) return 0;
  return kHeader + length;
}

bool ReadFile(const std::string& path, std::string* out, IoError* error) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Fail(error, "open " + path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return Fail(error, "stat " + path);
  }
  out->resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < out->size()) {
    const ssize_t n = ::read(fd, out->data() + done, out->size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      return Fail(error, "read " + path);
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return true;
}

}  // namespace

bool SyncDir(const std::string& dir, IoError* error) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Fail(error, "open " + dir);
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok || Fail(error, "fsync " + dir);
}

SegmentedLog::SegmentedLog(std::string dir, LogOptions options)
    : dir_(std::move(dir)), options_(options) {}

SegmentedLog::~SegmentedLog() {
  IoError ignored;
  Flush(&ignored);
  if (fd_ >= 0) ::close(fd_);
}

std::unique_ptr<SegmentedLog> SegmentedLog::Open(const std::string& dir, const LogOptions& options,
                                                 const Visitor& visit, ReplayReport* report,
                                                 IoError* error) {
  if (::mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST) {
    Fail(error, "mkdir " + dir);
    return nullptr;
  }
  std::unique_ptr<SegmentedLog> log(new SegmentedLog(dir, options));
  std::vector<uint64_t> bases;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name.size() == 24 && name.ends_with(".log") &&
          std::all_of(name.begin(), name.begin() + 20, ::isdigit)) {
        bases.push_back(std::stoull(name.substr(0, 20)));
      }
    }
    ::closedir(d);
  } else {
    Fail(error, "opendir " + dir);
    return nullptr;
  }
  std::sort(bases.begin(), bases.end());
  ReplayReport local;
  ReplayReport& r = report != nullptr ? *report : local;
  std::string data;
  for (size_t s = 0; s < bases.size(); ++s) {
    const std::string name = SegmentName(bases[s]);
    const std::string path = dir + "/" + name;
    if (!ReadFile(path, &data, error)) return nullptr;
    const bool last = s + 1 == bases.size();
    size_t at = 0, good_end = 0;
    while (at < data.size()) {
      if (const size_t n = RecordAt(data, at)) {
        visit(bases[s] + at, static_cast<uint8_t>(data[at + kHeader]),
              std::string_view(&data[at + kHeader + 1], n - kHeader - 1));
        ++r.records;
        at += n;
        good_end = at;
        continue;
      }
      // Damage: look for the next intact record. None in the last segment
      // means a write that never finished — cut it off.
      size_t next = at + 1;
      while (next < data.size() && RecordAt(data, next) == 0) ++next;
      if (next >= data.size() && last) {
        r.damage.push_back({name, at, data.size() - at, true});
        break;
      }
      r.damage.push_back({name, at, next - at, false});
      at = next;
      good_end = at;
    }
    ++r.segments;
    uint64_t size = data.size();
    if (last && good_end < data.size()) {
      if (::truncate(path.c_str(), static_cast<off_t>(good_end)) != 0) {
        Fail(error, "truncate " + path);
        return nullptr;
      }
      size = good_end;
    }
    log->segments_.push_back({bases[s], size});
  }
  if (log->segments_.empty()) log->segments_.push_back({0, 0});
  log->written_ = log->synced_ = log->segments_.back().size;
  if (!log->OpenTail(error)) return nullptr;
  return log;
}

bool SegmentedLog::OpenTail(IoError* error) {
  const std::string path = dir_ + "/" + SegmentName(segments_.back().base);
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd_ < 0) return Fail(error, "open " + path);
  // The new file's name must survive a crash too, or its records vanish.
  return SyncDir(dir_, error);
}

std::optional<uint64_t> SegmentedLog::Append(uint8_t type, std::string_view body, IoError* error) {
  const uint64_t bytes = kHeader + 1 + body.size();
  if (segments_.back().size > 0 && segments_.back().size + bytes > options_.max_segment_bytes) {
    if (!Roll(error)) return std::nullopt;
  }
  const uint64_t position = end();
  const uint32_t length = static_cast<uint32_t>(body.size() + 1);
  const uint32_t crc = Crc32c(body.data(), body.size(), Crc32c(&type, 1));
  Put32(buffer_, kMagic);
  Put32(buffer_, length);
  Put32(buffer_, crc);
  buffer_.push_back(static_cast<char>(type));
  buffer_.append(body);
  segments_.back().size += bytes;
  return position;
}

bool SegmentedLog::Flush(IoError* error) {
  size_t done = 0;
  while (done < buffer_.size()) {
    const ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Fail(error, "write " + dir_);
      CutBack(written_);
      return false;
    }
    done += static_cast<size_t>(n);
  }
  written_ += buffer_.size();
  buffer_.clear();
  return true;
}

bool SegmentedLog::Sync(IoError* error) {
  if (!Flush(error)) return false;
  if (::fdatasync(fd_) != 0) {
    // What the kernel did with the unsynced pages is unknown: cut them off
    // rather than trust them.
    Fail(error, "fdatasync " + dir_);
    CutBack(synced_);
    return false;
  }
  synced_ = written_;
  return true;
}

void SegmentedLog::CutBack(uint64_t size) {
  buffer_.clear();
  if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
    // The partial write stays; appends follow it, and recovery skips it as
    // damage. Positions must match the file, so count it.
    const off_t actual = ::lseek(fd_, 0, SEEK_END);
    if (actual >= 0) size = static_cast<uint64_t>(actual);
  }
  written_ = size;
  synced_ = std::min(synced_, size);
  segments_.back().size = size;
}

bool SegmentedLog::Roll(IoError* error) {
  if (!Sync(error)) return false;
  ::close(fd_);
  fd_ = -1;
  segments_.push_back({end(), 0});
  written_ = synced_ = 0;
  return OpenTail(error);
}

bool SegmentedLog::DropBefore(uint64_t position, IoError* error) {
  // Never the last segment: it is being written.
  while (segments_.size() > 1 && segments_[1].base <= position) {
    const std::string path = dir_ + "/" + SegmentName(segments_.front().base);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Fail(error, "unlink " + path);
    segments_.erase(segments_.begin());
  }
  return true;
}

uint64_t SegmentedLog::disk_bytes() const {
  uint64_t total = 0;
  for (const Segment& s : segments_) total += s.size;
  return total;
}

}  // namespace basin::storage
