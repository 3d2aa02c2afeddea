// The data directory: create, recover, remove, the lock against a second
// broker, and a queue whose log cannot be read.
#include "broker/storage/queue_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>

#include "broker/core/memory_budget.h"
#include "broker/core/queue.h"
#include "broker/storage/file_limit.h"
#include "storage_faults.h"
#include "temp_dir.h"

namespace basin::storage {
namespace {

core::QueueConfig Config(const std::string& name) {
  core::QueueConfig c;
  c.name = name;
  c.max_size = 100;
  c.visibility_timeout = std::chrono::seconds(30);
  c.durable = true;
  return c;
}

class QueueStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<QueueStore> Open(LogOptions options = {}) {
    std::string error;
    auto store = QueueStore::Open(data_, options, &committer_, &error);
    EXPECT_NE(store, nullptr) << error;
    return store;
  }

  testing::TempDir tmp_;
  const std::string data_ = tmp_.Sub("data");
  Committer committer_{FsyncPolicy::kBatch, std::chrono::milliseconds(1)};
};

TEST_F(QueueStoreTest, CreatedQueuesAreRecoveredAndRemovedOnesAreNot) {
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    std::string error;
    EXPECT_EQ(QueueStore::Open(data_, {}, &committer_, &error), nullptr);
    EXPECT_NE(error.find("in use"), std::string::npos) << error;
    auto kept = store->Create(Config("kept"));
    ASSERT_TRUE(kept.ok());
    auto m = core::Message::Make(1, "hello", {});
    std::promise<void> written;
    kept.value()->Put({m.get()}, {},
                      [&](std::optional<core::Error>, core::TimePoint) { written.set_value(); });
    written.get_future().wait();
    ASSERT_TRUE(store->Create(Config("removed")).ok());
    store->Remove("removed");
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto found = store->Recover();
  ASSERT_TRUE(found.ok());
  ASSERT_EQ(found.value().size(), 1u);
  EXPECT_EQ(found.value()[0].config, Config("kept"));
  ASSERT_EQ(found.value()[0].messages.size(), 1u);
  EXPECT_EQ(found.value()[0].messages[0]->payload(), "hello");
  EXPECT_EQ(found.value()[0].next_id, 2u);
  EXPECT_TRUE(store->recovery_warnings().empty());
}

TEST_F(QueueStoreTest, AnUnreadableQueueIsReportedAndSetAsideNotDeleted) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const std::string& data = data_;
  // A queue directory whose log holds no definition.
  std::filesystem::create_directories(data + "/queues/odd.queue");
  std::ofstream(data + "/queues/odd.queue/00000000000000000000.log") << "not a log";
  auto found = store->Recover();
  ASSERT_TRUE(found.ok());
  EXPECT_TRUE(found.value().empty());
  ASSERT_FALSE(store->recovery_warnings().empty());
  EXPECT_NE(store->recovery_warnings().back().find("odd.queue not recovered"), std::string::npos);
  ASSERT_TRUE(store->Create(Config("odd")).ok());
  size_t set_aside = 0;
  for (const auto& e : std::filesystem::directory_iterator(data + "/queues")) {
    if (e.path().filename().string().starts_with("odd.queue~unrecovered-")) ++set_aside;
  }
  EXPECT_EQ(set_aside, 1u);
}

// Queue names may contain ".deleted-": such a queue is a queue, not a
// delete the broker did not finish.
TEST_F(QueueStoreTest, AQueueNamedLikeAnOldTombstoneSurvivesARestart) {
  {
    auto store = Open();
    auto journal = store->Create(Config("jobs.deleted-old"));
    ASSERT_TRUE(journal.ok());
    for (uint64_t id = 1; id <= 3; ++id) {
      auto m = core::Message::Make(id, "job " + std::to_string(id), {});
      std::promise<void> written;
      journal.value()->Put({m.get()}, {}, [&](std::optional<core::Error> e, core::TimePoint) {
        EXPECT_FALSE(e.has_value());
        written.set_value();
      });
      written.get_future().wait();
    }
  }
  auto store = Open();
  auto found = store->Recover();
  ASSERT_TRUE(found.ok());
  ASSERT_EQ(found.value().size(), 1u);
  EXPECT_EQ(found.value()[0].config, Config("jobs.deleted-old"));
  ASSERT_EQ(found.value()[0].messages.size(), 3u);
  EXPECT_EQ(found.value()[0].messages[2]->payload(), "job 3");
}

// Recovery deletes only what it can prove is a tombstone: a name with a
// character no queue name has. What an older basind left under its ambiguous
// names stays, with a warning.
TEST_F(QueueStoreTest, RecoveryDeletesOnlyUnambiguousTombstones) {
  auto store = Open();
  const std::string queues = data_ + "/queues/";
  for (const char* name : {"a.queue~deleted-12-0", "b.queue.deleted-12-0",
                           "c.queue~unrecovered-12-0", "d.queue.unrecovered-12-0"}) {
    std::filesystem::create_directories(queues + name);
    std::ofstream(queues + name + "/00000000000000000000.log") << "x";
  }
  auto found = store->Recover();
  ASSERT_TRUE(found.ok());
  EXPECT_TRUE(found.value().empty());
  EXPECT_FALSE(std::filesystem::exists(queues + "a.queue~deleted-12-0"));
  EXPECT_TRUE(std::filesystem::exists(queues + "b.queue.deleted-12-0"));
  EXPECT_TRUE(std::filesystem::exists(queues + "c.queue~unrecovered-12-0"));
  EXPECT_TRUE(std::filesystem::exists(queues + "d.queue.unrecovered-12-0"));
  bool warned = false;
  for (const std::string& w : store->recovery_warnings()) {
    warned |= w.find("b.queue.deleted-12-0") != std::string::npos;
  }
  EXPECT_TRUE(warned);
}

// A definition naming another queue than its directory does is not trusted:
// recovering it would give two directories one queue, or put a queue's files
// where deleting it would not find them.
TEST_F(QueueStoreTest, ALogWhoseDefinitionNamesAnotherQueueIsNotRecovered) {
  {
    auto store = Open();
    ASSERT_TRUE(store->Create(Config("real")).ok());
  }
  std::filesystem::rename(data_ + "/queues/real.queue", data_ + "/queues/other.queue");
  auto store = Open();
  auto found = store->Recover();
  ASSERT_TRUE(found.ok());
  EXPECT_TRUE(found.value().empty());
  ASSERT_FALSE(store->recovery_warnings().empty());
  EXPECT_NE(store->recovery_warnings().back().find("other.queue not recovered"), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(data_ + "/queues/other.queue"));
}

// Every recovered queue keeps its tail segment open, so at the open-file
// limit the queues after some point fail to open (EMFILE). Such a queue is
// not skipped: recovery fails, naming it, and the broker does not start —
// rather than start without it and set its messages aside when a client
// creates it again.
TEST_F(QueueStoreTest, AQueueThatCannotBeOpenedAtRecoveryFailsTheRecovery) {
  {
    auto store = Open();
    ASSERT_TRUE(store->Create(Config("a")).ok());
    ASSERT_TRUE(store->Create(Config("b")).ok());
  }
  auto store = Open();
  // One more file may be open: queue a's tail takes it.
  const int probe = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(probe, 0);
  ::close(probe);
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit low = saved;
  low.rlim_cur = static_cast<rlim_t>(probe) + 1;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  auto found = store->Recover();
  ::setrlimit(RLIMIT_NOFILE, &saved);
  ASSERT_FALSE(found.ok()) << "recovered " << found.value().size() << " queues";
  EXPECT_EQ(found.error().code, core::Errc::kStorageUnavailable);
  EXPECT_NE(found.error().message.find("b.queue"), std::string::npos) << found.error().message;
  EXPECT_NE(found.error().message.find(std::strerror(EMFILE)), std::string::npos)
      << found.error().message;
  // Once the limit allows, both come back.
  auto again = store->Recover();
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again.value().size(), 2u);
}

// A failed read of a queue's files (EIO: a bad sector) is that queue's
// damage, not the machine's: no restart cures it, and stopping recovery
// would keep every other queue down for one bad sector. The queue is skipped
// with a warning and its files stay. What a restart does cure once its cause
// is removed (ENOMEM here, EMFILE above) still stops recovery.
TEST_F(QueueStoreTest, AQueueWhoseFilesCannotBeReadIsSkippedNotFatal) {
  testing::StorageFaults faults;
  {
    auto store = Open();
    ASSERT_TRUE(store->Create(Config("bad")).ok());
    ASSERT_TRUE(store->Create(Config("good")).ok());
  }
  auto store = Open({.faults = faults.Hook()});
  faults.Fail(FileOp::kRead, EIO, "/bad.queue/");
  auto found = store->Recover();
  ASSERT_TRUE(found.ok()) << found.error().message;
  ASSERT_EQ(found.value().size(), 1u);
  EXPECT_EQ(found.value()[0].config.name, "good");
  ASSERT_FALSE(store->recovery_warnings().empty());
  const std::string& warning = store->recovery_warnings().back();
  EXPECT_NE(warning.find("bad.queue not recovered"), std::string::npos) << warning;
  EXPECT_NE(warning.find(std::strerror(EIO)), std::string::npos) << warning;
  EXPECT_TRUE(std::filesystem::exists(data_ + "/queues/bad.queue/00000000000000000000.log"));
  found.value().clear();

  faults.Fail(FileOp::kRead, ENOMEM, "/bad.queue/");
  auto fatal = store->Recover();
  ASSERT_FALSE(fatal.ok());
  EXPECT_EQ(fatal.error().code, core::Errc::kStorageUnavailable);
  EXPECT_NE(fatal.error().message.find("bad.queue"), std::string::npos) << fatal.error().message;

  faults.Clear();
  auto again = store->Recover();
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again.value().size(), 2u);
}

// A put batch is one group in the log — its puts, then its put keys — yet it
// can come back in part: damage can hit one put, and a power cut before the
// batch's fdatasync can keep some of its pages and not others. Replay skips
// the lost put and replays the rest, keys included. A key whose put did not
// come back must not be restored: the client's resend would be answered as a
// duplicate of a message that exists nowhere.
TEST_F(QueueStoreTest, TheKeysOfAPutThatDidNotComeBackAreNotRestored) {
  const std::string lost = "the first put, lost to damage";
  {
    auto store = Open();
    auto journal = store->Create(Config("keys"));
    ASSERT_TRUE(journal.ok());
    auto m1 = core::Message::Make(1, lost, {});
    auto m2 = core::Message::Make(2, "the second put", {});
    core::PutKeys keys;
    keys.dedup_ids = {{"d1", 1}, {"d2", 2}};
    keys.producer = "producer";
    keys.sequences = {{1, 1}, {2, 2}};
    std::promise<bool> written;
    journal.value()->Put(
        {m1.get(), m2.get()}, keys,
        [&](std::optional<core::Error> e, core::TimePoint) { written.set_value(!e.has_value()); });
    ASSERT_TRUE(written.get_future().get());
  }
  // The first put's payload zeroed (a page the power cut lost): its record
  // no longer verifies, the second put and the keys after it still do.
  const std::string segment = data_ + "/queues/keys.queue/00000000000000000000.log";
  std::string bytes;
  {
    std::ifstream in(segment, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const size_t at = bytes.find(lost);
  ASSERT_NE(at, std::string::npos);
  std::fill_n(bytes.begin() + static_cast<std::ptrdiff_t>(at), lost.size(), '\0');
  std::ofstream(segment, std::ios::binary | std::ios::trunc) << bytes;

  auto store = Open();
  auto found = store->Recover();
  ASSERT_TRUE(found.ok()) << found.error().message;
  ASSERT_EQ(found.value().size(), 1u);
  core::DurableStore::Recovered& r = found.value()[0];
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0]->id(), 2u);
  // The queue the broker rebuilds, and the client's resends of the batch:
  // by dedup id, then by producer sequence.
  core::MemoryBudget memory(0);
  auto queue = std::make_shared<core::Queue>(r.config, 1, core::QueueLimits{}, &memory, nullptr,
                                             nullptr, r.journal);
  const core::TimePoint now = core::Clock::now();
  queue->Restore(std::move(r.messages), r.next_id, r.closed, r.keys, now);
  const auto resend = [&](std::vector<core::MessageSpec> batch, core::BatchOrigin origin) {
    std::promise<core::Result<std::vector<core::PutResult>>> answered;
    core::WaitId id = 0;
    queue->PutBatch(
        batch, now, now, &id,
        [&](core::Result<std::vector<core::PutResult>> result) {
          answered.set_value(std::move(result));
        },
        origin);
    auto result = answered.get_future().get();
    EXPECT_TRUE(result.ok()) << result.error().message;
    return result.ok() ? result.value() : std::vector<core::PutResult>(2);
  };
  auto by_dedup = resend({{lost, nullptr, "d1"}, {"the second put", nullptr, "d2"}}, {});
  ASSERT_EQ(by_dedup.size(), 2u);
  EXPECT_FALSE(by_dedup[0].duplicate)
      << "d1 answered as message " << by_dedup[0].message_id << ", which did not come back";
  EXPECT_TRUE(by_dedup[1].duplicate);
  EXPECT_EQ(by_dedup[1].message_id, 2u);
  auto by_sequence = resend({{lost, nullptr, ""}, {"the second put", nullptr, ""}},
                            core::BatchOrigin{"producer", 1});
  ASSERT_EQ(by_sequence.size(), 2u);
  EXPECT_FALSE(by_sequence[0].duplicate)
      << "sequence 1 answered as message " << by_sequence[0].message_id
      << ", which did not come back";
  EXPECT_TRUE(by_sequence[1].duplicate);
  EXPECT_EQ(by_sequence[1].message_id, 2u);
}

// A delay is kept across a restart by its wall-clock end; a plain message
// beside it comes back plain; and the definition the log now holds is one an
// older broker refuses rather than misread.
TEST_F(QueueStoreTest, ADelayedMessageComesBackDelayedToTheSameEnd) {
  const core::TimePoint put_at = core::Clock::now();
  {
    auto store = Open();
    auto journal = store->Create(Config("later"));
    ASSERT_TRUE(journal.ok());
    core::MessageAttrs attrs;
    attrs.ready_at = put_at + std::chrono::hours(1);
    auto delayed = core::Message::Make(1, "delayed", {}, attrs);
    auto plain = core::Message::Make(2, "plain", {});
    std::promise<void> written;
    journal.value()->Put({delayed.get(), plain.get()}, {},
                         [&](std::optional<core::Error>, core::TimePoint) { written.set_value(); });
    written.get_future().wait();
  }
  auto store = Open();
  auto found = store->Recover();
  ASSERT_TRUE(found.ok());
  ASSERT_EQ(found.value().size(), 1u);
  const auto& messages = found.value()[0].messages;
  ASSERT_EQ(messages.size(), 2u);
  const core::Duration error = messages[0]->ready_at() - (put_at + std::chrono::hours(1));
  EXPECT_LT(std::chrono::abs(error), std::chrono::seconds(5));
  EXPECT_FALSE(messages[1]->has_attrs());
  EXPECT_EQ(messages[1]->payload(), "plain");
}

// A release's retry delay is written down: after a restart the message
// still waits out the rest of it, with its delivery count.
TEST_F(QueueStoreTest, ARetryDelayOutlastsARestart) {
  core::QueueConfig config = Config("retried");
  config.retry_backoff = {std::chrono::hours(1)};
  const core::TimePoint now = core::Clock::now();
  {
    auto store = Open();
    auto journal = store->Create(config);
    ASSERT_TRUE(journal.ok());
    core::MemoryBudget memory(0);
    auto queue = std::make_shared<core::Queue>(config, 1, core::QueueLimits{}, &memory, nullptr,
                                               nullptr, journal.value());
    std::promise<void> put;
    core::WaitId id = 0;
    queue->Put("job", {}, now, now, &id, [&](core::Result<uint64_t>) { put.set_value(); });
    put.get_future().wait();
    std::promise<std::string> got;
    queue->Get({}, now, now, &id,
               [&](core::Result<core::Delivery> d) { got.set_value(d.value().tag); });
    auto released = queue->Release(got.get_future().get(), now);
    ASSERT_TRUE(released.ok());
    EXPECT_EQ(released.value().delay, std::chrono::hours(1));
    // The retry is not waited for: a close after it is, and comes after it.
    std::promise<void> closed;
    journal.value()->Closed(
        [&](std::optional<core::Error>, core::TimePoint) { closed.set_value(); });
    closed.get_future().wait();
  }
  auto store = Open();
  auto found = store->Recover();
  ASSERT_TRUE(found.ok());
  ASSERT_EQ(found.value().size(), 1u);
  EXPECT_EQ(found.value()[0].config, config);
  const auto& messages = found.value()[0].messages;
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0]->delivery_count(), 1u);
  const core::Duration error = messages[0]->ready_at() - (now + std::chrono::hours(1));
  EXPECT_LT(std::chrono::abs(error), std::chrono::seconds(5));
}

// A log that is not this broker's to read (a later format) is the log's
// matter, not the machine's: that queue is skipped with a warning and the
// others recover.
TEST_F(QueueStoreTest, AQueueOfALaterLogFormatIsSkippedNotFatal) {
  {
    auto store = Open();
    ASSERT_TRUE(store->Create(Config("new")).ok());
    ASSERT_TRUE(store->Create(Config("old")).ok());
  }
  const std::string segment = data_ + "/queues/new.queue/00000000000000000000.log";
  std::string bytes;
  {
    std::ifstream in(segment, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  bytes[4] = 3;  // the format version
  std::ofstream(segment, std::ios::binary | std::ios::trunc) << bytes;
  auto store = Open();
  auto found = store->Recover();
  ASSERT_TRUE(found.ok()) << found.error().message;
  ASSERT_EQ(found.value().size(), 1u);
  EXPECT_EQ(found.value()[0].config.name, "old");
  ASSERT_FALSE(store->recovery_warnings().empty());
  EXPECT_NE(store->recovery_warnings().back().find("new.queue not recovered"), std::string::npos);
}

// basind raises its soft open-file limit to the hard one at start, so that a
// data directory of more queues than the usual 1024 recovers.
TEST(FileLimitTest, TheSoftLimitIsRaisedToTheHardOne) {
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit low = saved;
  low.rlim_cur = std::min<rlim_t>(saved.rlim_max, 64);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  std::string error;
  const uint64_t limit = RaiseOpenFileLimit(&error);
  rlimit now{};
  ::getrlimit(RLIMIT_NOFILE, &now);
  ::setrlimit(RLIMIT_NOFILE, &saved);
  EXPECT_TRUE(error.empty()) << error;
  EXPECT_EQ(now.rlim_cur, saved.rlim_max);
  EXPECT_EQ(limit, static_cast<uint64_t>(saved.rlim_max));
}

}  // namespace
}  // namespace basin::storage
