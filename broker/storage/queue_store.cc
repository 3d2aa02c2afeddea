#include "broker/storage/queue_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "broker/storage/log_journal.h"
#include "broker/storage/queue_definition.h"
#include "broker/storage/queue_records.h"

namespace basin::storage {
namespace {

constexpr std::string_view kQueueSuffix = ".queue";
constexpr std::string_view kDeletedMark = ".deleted-";
constexpr std::string_view kSetAsideMark = ".unrecovered-";

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
  return std::unique_ptr<QueueStore>(new QueueStore(dir, options, committer, fd));
}

QueueStore::QueueStore(std::string dir, LogOptions options, Committer* committer, int lock_fd)
    : dir_(std::move(dir)),
      queues_dir_(dir_ + "/queues"),
      options_(options),
      committer_(committer),
      lock_fd_(lock_fd) {}

QueueStore::~QueueStore() { ::close(lock_fd_); }

std::string QueueStore::QueueDir(const std::string& name) const {
  return queues_dir_ + "/" + name + std::string(kQueueSuffix);
}

std::string QueueStore::AsideName(const std::string& dir, std::string_view mark) {
  // Unique across restarts (the pid) and within one (the counter).
  return dir + std::string(mark) + std::to_string(::getpid()) + "-" + std::to_string(next_aside_++);
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
  if (log == nullptr) return StorageUnavailable(io.message);
  for (const Damage& d : report.damage) {
    warnings_.push_back(dir_name + "/" + d.segment + ": " +
                        (d.truncated
                             ? "torn tail of " + std::to_string(d.skipped) + " bytes at offset " +
                                   std::to_string(d.offset) + " cut off"
                             : "damaged stretch of " + std::to_string(d.skipped) +
                                   " bytes at offset " + std::to_string(d.offset) +
                                   " skipped; the records after it were recovered"));
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
  Recovered out;
  out.config = std::move(*config);
  out.next_id = replay.next_id();
  out.closed = replay.closed();
  out.bindings.assign(replay.bindings().begin(), replay.bindings().end());
  out.keys = replay.keys();
  out.messages.reserve(replay.live().size());
  for (const auto& [id, live] : replay.live()) {
    auto msg = core::Message::Decode(id, live.deliveries, live.message);
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
  journal->Restored(replay, end);
  out.journal = std::move(journal);
  return out;
}

core::Result<std::vector<QueueStore::Recovered>> QueueStore::Recover() {
  std::lock_guard lock(mu_);
  warnings_.clear();
  std::vector<Recovered> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(queues_dir_, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.find(kDeletedMark) != std::string::npos) {
      std::filesystem::remove_all(entry.path(), ec);  // a delete the broker did not finish
      continue;
    }
    if (!entry.is_directory() || !name.ends_with(kQueueSuffix)) continue;
    auto queue = RecoverQueue(name);
    if (!queue.ok()) {
      warnings_.push_back(name + " not recovered: " + queue.error().message +
                          "; its files stay where they are (set aside if a queue of that name "
                          "is created)");
      continue;
    }
    out.push_back(std::move(queue.value()));
  }
  if (ec) return StorageUnavailable("cannot list " + queues_dir_ + ": " + ec.message());
  return out;
}

}  // namespace basin::storage
