// The data directory: create, recover, remove, the lock against a second
// broker, and a queue whose log cannot be read.
#include "broker/storage/queue_store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>

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
  std::unique_ptr<QueueStore> Open() {
    std::string error;
    auto store = QueueStore::Open(data_, {}, &committer_, &error);
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

}  // namespace
}  // namespace basin::storage
