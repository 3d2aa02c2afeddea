#include "broker/storage/queue_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>

#include "broker/core/broker.h"
#include "broker/storage/log_journal.h"
#include "broker/storage/queue_definition.h"
#include "broker/storage/queue_records.h"

namespace basin::storage {
namespace {

constexpr std::string_view kQueueSuffix = ".queue";
// After NAME.queue, and starting with a character no queue name has.
constexpr std::string_view kDeletedMark = "~deleted-";
constexpr std::string_view kSetAsideMark = "~unrecovered-";
// What versions before those marks used. A queue's name can contain them.
constexpr std::string_view kOldDeletedMark = ".deleted-";
constexpr std::string_view kOldSetAsideMark = ".unrecovered-";

bool IsDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The queue's name if `entry` is NAME.queue for a valid queue name.
std::optional<std::string_view> QueueOfDir(std::string_view entry) {
  if (!entry.ends_with(kQueueSuffix)) return std::nullopt;
  const std::string_view name = entry.substr(0, entry.size() - kQueueSuffix.size());
  if (!core::ValidateQueueName(name).ok()) return std::nullopt;
  return name;
}

// Whether `entry` is exactly what QueueStore::AsideName makes with `mark`:
// NAME.queue, the mark, then PID-N.
bool IsAside(std::string_view entry, std::string_view mark) {
  const size_t at = entry.find(mark);
  if (at == std::string_view::npos || !QueueOfDir(entry.substr(0, at))) return false;
  const std::string_view suffix = entry.substr(at + mark.size());
  const size_t dash = suffix.find('-');
  return dash != std::string_view::npos && IsDigits(suffix.substr(0, dash)) &&
         IsDigits(suffix.substr(dash + 1));
}

// Whether a failed system call is one the machine's state caused — a limit,
// memory, space, the data directory's permissions or mount — so that the
// same log opens once that is put right. Permissions and a read-only mount
// are among them: they are the whole directory's matter, and skipping every
// queue for them would start a broker without its queues.
bool CurableByARestart(int err) {
  switch (err) {
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case ENOSPC:
    case EDQUOT:
    case EACCES:
    case EPERM:
    case EROFS:
      return true;
    default:
      return false;
  }
}

// Why the log of the queue directory `dir_name` did not open, as an error
// Recover can act on. EMFILE, ENOSPC and the like say nothing about the log:
// skipping the queue would hide it until a create of its name set its
// messages aside, so they stop recovery (and the broker's start) —
// kStorageUnavailable — until the cause is removed. Anything else is that
// queue's own matter and is kInvalidArgument: the queue is skipped with a
// warning and its files stay. That is a log that cannot be used as it is (a
// later format), and a failed read or write of its files (EIO: a bad
// sector): no restart cures that, and one bad sector must not keep every
// other queue down.
core::Error Unopened(const std::string& dir_name, const IoError& io) {
  if (io.refused || !CurableByARestart(io.error)) {
    return core::Error{core::Errc::kInvalidArgument, io.message};
  }
  return StorageUnavailable("cannot open queue directory " + dir_name + ": " + io.message +
                            "; recovery stops rather than start without this queue: remove the "
                            "cause (the open-file limit, memory, a full disk, permissions, a "
                            "read-only mount) and start again");
}

std::string Describe(const Damage& d) {
  return d.truncated ? "torn tail of " + std::to_string(d.skipped) + " bytes at offset " +
                           std::to_string(d.offset) + " cut off"
                     : "damaged stretch of " + std::to_string(d.skipped) + " bytes at offset " +
                           std::to_string(d.offset) +
                           " skipped (the records in it are lost, the rest is recovered)";
}

}  // namespace

std::unique_ptr<QueueStore> QueueStore::Open(const std::string& dir, LogOptions options,
                                             Committer* committer, std::string* error) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(dir) / "queues", ec);
  if (ec) {
    *error = "cannot create " + dir + "/queues: " + ec.message();
    return nullptr;
  }
  const std::string lock_path = dir + "/LOCK";
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    *error = "cannot open " + lock_path + ": " + std::strerror(errno);
    return nullptr;
  }
  // Two brokers writing one log would interleave records: refuse the second.
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    *error = "data directory " + dir + " is in use by another basind (" + lock_path + " is locked)";
    ::close(fd);
    return nullptr;
  }
  if (options.counters == nullptr) options.counters = std::make_shared<StorageCounters>();
  return std::unique_ptr<QueueStore>(new QueueStore(dir, std::move(options), committer, fd));
}

QueueStore::QueueStore(std::string dir, LogOptions options, Committer* committer, int lock_fd)
    : dir_(std::move(dir)),
      queues_dir_(dir_ + "/queues"),
      options_(std::move(options)),
      committer_(committer),
      lock_fd_(lock_fd) {}

QueueStore::~QueueStore() { ::close(lock_fd_); }

std::string QueueStore::QueueDir(const std::string& name) const {
  return queues_dir_ + "/" + name + std::string(kQueueSuffix);
}

std::string QueueStore::AsideName(const std::string& dir, std::string_view mark) {
  // The pid tells restarts apart and the counter names within one; a pid
  // reused by a later broker is skipped over.
  for (;;) {
    std::string aside =
        dir + std::string(mark) + std::to_string(::getpid()) + "-" + std::to_string(next_aside_++);
    std::error_code ec;
    if (!std::filesystem::exists(aside, ec)) return aside;
  }
}

core::Result<std::shared_ptr<core::QueueJournal>> QueueStore::Create(
    const core::QueueConfig& config) {
  std::lock_guard lock(mu_);
  const std::string dir = QueueDir(config.name);
  // A directory already here was not recovered: a create the broker died
  // before answering, or a log recovery could not read. Set it aside rather
  // than delete it — it may hold someone's messages.
  std::error_code ec;
  if (std::filesystem::exists(dir, ec)) {
    const std::string aside = AsideName(dir, kSetAsideMark);
    if (::rename(dir.c_str(), aside.c_str()) != 0) {
      return StorageUnavailable("cannot set aside " + dir + ": " + std::strerror(errno));
    }
  }
  IoError io;
  auto log = SegmentedLog::Open(
      dir, options_, [](uint64_t, uint8_t, std::string_view) {}, nullptr, &io);
  if (log == nullptr) return StorageUnavailable(io.message);
  // Written and synced here, before the create is answered: rare, and a queue
  // a client was told exists must exist after a crash.
  const std::string definition = EncodeDefinition(config);
  if (!log->Append(static_cast<uint8_t>(QueueRecord::kDefined), definition, &io) ||
      !log->Sync(&io) || !SyncDir(queues_dir_, &io)) {
    log.reset();
    std::filesystem::remove_all(dir, ec);
    return StorageUnavailable(io.message);
  }
  return std::shared_ptr<core::QueueJournal>(std::make_shared<LogJournal>(
      committer_->Adopt(std::move(log)), definition, options_.max_segment_bytes));
}

void QueueStore::Remove(const std::string& name) {
  std::lock_guard lock(mu_);
  // Renamed first, so a crash halfway through deleting cannot leave a queue
  // that recovers with some of its messages.
  const std::string dir = QueueDir(name);
  const std::string tombstone = AsideName(dir, kDeletedMark);
  std::error_code ec;
  if (::rename(dir.c_str(), tombstone.c_str()) == 0) {
    SyncDir(queues_dir_, nullptr);
    std::filesystem::remove_all(tombstone, ec);
  } else {
    std::filesystem::remove_all(dir, ec);
  }
}

core::Result<QueueStore::Recovered> QueueStore::RecoverQueue(const std::string& dir_name) {
  const std::string dir = queues_dir_ + "/" + dir_name;
  QueueReplay replay;
  ReplayReport report;
  IoError io;
  uint64_t bad_records = 0;
  auto log = SegmentedLog::Open(
      dir, options_,
      [&](uint64_t position, uint8_t type, std::string_view body) {
        if (!replay.Apply(position, type, body)) ++bad_records;
      },
      &report, &io);
  if (log == nullptr) return Unopened(dir_name, io);
  for (const Damage& d : report.damage)
    warnings_.push_back(dir_name + "/" + d.segment + ": " + Describe(d));
  for (const std::string& name : report.ignored) {
    warnings_.push_back(dir_name + "/" + name + ": not a segment of this log; left alone");
  }
  for (const std::string& name : report.removed) {
    warnings_.push_back(dir_name + "/" + name + ": an empty segment a failed roll left; removed");
  }
  if (bad_records > 0) {
    warnings_.push_back(dir_name + ": " + std::to_string(bad_records) +
                        " records with an intact checksum did not parse and were ignored");
  }
  if (!replay.definition()) {
    return core::Error{core::Errc::kInvalidArgument, dir_name + " holds no queue definition"};
  }
  auto config = DecodeDefinition(*replay.definition());
  if (!config) {
    return core::Error{core::Errc::kInvalidArgument,
                       dir_name + "'s definition is not one this version can read"};
  }
  // A definition naming another queue than its directory does would give two
  // directories one queue, or a queue whose delete misses its files.
  if (config->name + std::string(kQueueSuffix) != dir_name) {
    return core::Error{core::Errc::kInvalidArgument,
                       dir_name + "'s definition is of queue '" + config->name + "'"};
  }
  Recovered out;
  out.config = std::move(*config);
  out.next_id = replay.next_id();
  out.closed = replay.closed();
  out.bindings.assign(replay.bindings().begin(), replay.bindings().end());
  out.keys = replay.keys();
  out.messages.reserve(replay.live().size());
  // Logged times are wall-clock; the core's are steady. A delay keeps its
  // wall-clock end across the restart.
  const core::TimePoint steady_now = core::Clock::now();
  const auto wall_now = std::chrono::duration_cast<core::Duration>(
      std::chrono::system_clock::now().time_since_epoch());
  const auto steady = [&](int64_t wall_ns) {
    const auto wall = std::chrono::duration_cast<core::Duration>(std::chrono::nanoseconds(wall_ns));
    return wall <= wall_now ? steady_now : core::AddSaturating(steady_now, wall - wall_now);
  };
  for (const auto& [id, live] : replay.live()) {
    core::MessageAttrs attrs;
    if (live.delayed() && steady(live.attrs.ready_at) > steady_now) {
      attrs.ready_at = steady(live.attrs.ready_at);
    }
    if (live.attrs.expires_at != 0) attrs.expires_at = steady(live.attrs.expires_at);
    attrs.priority = live.attrs.priority;
    attrs.group = live.attrs.group;
    auto msg = core::Message::Decode(id, live.deliveries, live.message, attrs);
    if (!msg.ok()) {
      warnings_.push_back(dir_name + ": message " + std::to_string(id) +
                          " did not decode and was dropped");
      continue;
    }
    out.messages.push_back(std::move(msg.value()));
  }
  const uint64_t end = log->end();
  auto journal = std::make_shared<LogJournal>(committer_->Adopt(std::move(log)),
                                              *replay.definition(), options_.max_segment_bytes);
  journal->Restored(replay, end, out.messages);
  out.journal = std::move(journal);
  return out;
}

core::Result<std::vector<QueueStore::Recovered>> QueueStore::Recover() {
  std::lock_guard lock(mu_);
  warnings_.clear();
  // Listed first, acted on after: what a directory iteration shows of entries
  // removed during it is unspecified. Without exceptions: none may escape
  // recovery.
  std::vector<std::pair<std::string, bool>> entries;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(queues_dir_, ec), end; !ec && it != end;
       it.increment(ec)) {
    std::error_code type_ec;
    entries.emplace_back(it->path().filename().string(), it->is_directory(type_ec));
  }
  if (ec) return StorageUnavailable("cannot list " + queues_dir_ + ": " + ec.message());
  std::sort(entries.begin(), entries.end());
  std::vector<Recovered> out;
  for (const auto& [name, is_directory] : entries) {
    if (auto fatal = RecoverEntry(name, is_directory, &out)) return *fatal;
  }
  return out;
}

std::optional<core::Error> QueueStore::RecoverEntry(const std::string& name, bool is_directory,
                                                    std::vector<Recovered>* out) {
  if (IsAside(name, kDeletedMark)) {
    // A delete the broker did not finish.
    std::error_code ec;
    std::filesystem::remove_all(queues_dir_ + "/" + name, ec);
    if (ec) warnings_.push_back(name + ": a deleted queue's files not removed: " + ec.message());
    return std::nullopt;
  }
  if (IsAside(name, kSetAsideMark)) {
    warnings_.push_back(name +
                        ": a log recovery could not read, set aside when its queue was created "
                        "again; left for someone to look at or remove");
    return std::nullopt;
  }
  if (!is_directory || !QueueOfDir(name)) {
    const bool older = name.find(kOldDeletedMark) != std::string::npos ||
                       name.find(kOldSetAsideMark) != std::string::npos;
    warnings_.push_back(
        name + (older ? ": named as an older basind named deleted and set-aside queues, which a "
                        "queue's own name can look like, so not deleted; remove it by hand if "
                        "it is not wanted"
                      : ": not a queue's directory; left alone"));
    return std::nullopt;
  }
  auto queue = RecoverQueue(name);
  if (!queue.ok()) {
    if (queue.error().code == core::Errc::kStorageUnavailable) return queue.error();
    warnings_.push_back(name + " not recovered: " + queue.error().message +
                        "; its files stay where they are (set aside if a queue of that name "
                        "is created)");
    return std::nullopt;
  }
  out->push_back(std::move(queue.value()));
  return std::nullopt;
}

}  // namespace basin::storage
