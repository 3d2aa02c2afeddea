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
    kept.value()->Put({m.get()}, {}, [&](std::optional<core::Error>) { written.set_value(); });
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
    if (e.path().filename().string().starts_with("odd.queue.unrecovered-")) ++set_aside;
  }
  EXPECT_EQ(set_aside, 1u);
}

}  // namespace
}  // namespace basin::storage
