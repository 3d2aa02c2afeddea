#include "broker/storage/committer.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <filesystem>
#include <future>
#include <map>
#include <thread>

#include "storage_faults.h"
#include "temp_dir.h"

namespace basin::storage {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

class CommitterTest : public ::testing::Test {
 protected:
  std::unique_ptr<SegmentedLog> Open(std::vector<std::string>* bodies = nullptr) {
    IoError error;
    auto log = SegmentedLog::Open(
        dir_, {},
        [&](uint64_t, uint8_t, std::string_view body) {
          if (bodies != nullptr) bodies->emplace_back(body);
        },
        nullptr, &error);
    EXPECT_NE(log, nullptr) << error.message;
    return log;
  }

  // Appends one record and waits until the committer says it is durable.
  static bool AppendAndWait(CommittedLog& log, std::string body) {
    std::promise<bool> durable;
    log.Append({{1, std::move(body)}},
               [&](const IoError* e, uint64_t) { durable.set_value(e == nullptr); });
    return durable.get_future().get();
  }

  testing::TempDir tmp_;
  const std::string dir_ = tmp_.Sub("q");
};

TEST_F(CommitterTest, ConcurrentAppendsShareSyncsAndKeepEachWritersOrder) {
  constexpr int kThreads = 8, kEach = 50;
  uint64_t syncs = 0;
  {
    Committer committer(FsyncPolicy::kBatch, milliseconds(5));
    auto log = committer.Adopt(Open());
    std::vector<std::thread> writers;
    for (int t = 0; t < kThreads; ++t) {
      writers.emplace_back([&, t] {
        for (int i = 0; i < kEach; ++i) {
          ASSERT_TRUE(AppendAndWait(*log, std::to_string(t) + ":" + std::to_string(i)));
        }
      });
    }
    for (auto& w : writers) w.join();
    syncs = committer.syncs();
  }
  // Eight writers each waiting for their own record: a sync carries several.
  EXPECT_LT(syncs, static_cast<uint64_t>(kThreads * kEach));
  EXPECT_GE(syncs, 1u);
  std::vector<std::string> bodies;
  Open(&bodies);
  ASSERT_EQ(bodies.size(), static_cast<size_t>(kThreads * kEach));
  std::map<std::string, int> next;
  for (const std::string& b : bodies) {
    const std::string writer = b.substr(0, b.find(':'));
    EXPECT_EQ(b, writer + ":" + std::to_string(next[writer]++));
  }
}

TEST_F(CommitterTest, AlwaysSyncsBeforeAnsweringAndNeverDoesNot) {
  {
    Committer committer(FsyncPolicy::kAlways, milliseconds(5));
    auto log = committer.Adopt(Open());
    ASSERT_TRUE(AppendAndWait(*log, "one"));
    EXPECT_EQ(committer.syncs(), 1u);
  }
  {
    Committer committer(FsyncPolicy::kNever, milliseconds(5));
    auto log = committer.Adopt(Open());
    ASSERT_TRUE(AppendAndWait(*log, "two"));
    log->Append({{1, "three"}}, nullptr);  // nobody waits: written all the same
  }
  std::vector<std::string> bodies;
  Open(&bodies);
  EXPECT_EQ(bodies, (std::vector<std::string>{"one", "two", "three"}));
}

// A full disk (here: the file size limit, which fails writes with EFBIG):
// the append fails, nothing half-written stays, and appends work again once
// there is room.
TEST_F(CommitterTest, AFailedWriteLeavesTheLogIntactAndLaterAppendsWork) {
  Committer committer(FsyncPolicy::kAlways, milliseconds(5));
  auto log = committer.Adopt(Open());
  ASSERT_TRUE(AppendAndWait(*log, "before"));
  const auto file = dir_ + "/00000000000000000000.log";
  const auto size = fs::file_size(file);
  struct sigaction ignore {
  }, old{};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGXFSZ, &ignore, &old);
  rlimit limit{}, saved{};
  ::getrlimit(RLIMIT_FSIZE, &saved);
  limit = saved;
  limit.rlim_cur = size + 100;
  ::setrlimit(RLIMIT_FSIZE, &limit);
  const bool big_ok = AppendAndWait(*log, std::string(1000, 'x'));
  ::setrlimit(RLIMIT_FSIZE, &saved);
  ::sigaction(SIGXFSZ, &old, nullptr);
  EXPECT_FALSE(big_ok);
  EXPECT_EQ(fs::file_size(file), size) << "the partial write was cut off";
  ASSERT_TRUE(AppendAndWait(*log, "after"));
  std::vector<std::string> bodies;
  IoError error;
  ReplayReport report;
  SegmentedLog::Open(
      dir_, {}, [&](uint64_t, uint8_t, std::string_view b) { bodies.emplace_back(b); }, &report,
      &error);
  EXPECT_EQ(bodies, (std::vector<std::string>{"before", "after"}));
  EXPECT_TRUE(report.damage.empty());
}

// One commit whose records span a roll: the roll synced the first ones into
// the old segment, so they are durable (a restart brings them back) and their
// caller must hear so, even though the records after the roll could not be
// written.
TEST_F(CommitterTest, ACommitSpanningARollReportsExactlyWhatWasMadeDurable) {
  std::promise<void> blocked, release;
  std::shared_future<void> released = release.get_future().share();
  bool first_write = true;
  testing::StorageFaults faults;
  const LogOptions options{.max_segment_bytes = 300,
                           .faults = [&](FileOp op, const std::string& path) {
                             // The first write holds the committer, so that the next two appends
                             // wait together and share one commit.
                             if (op == FileOp::kWrite && std::exchange(first_write, false)) {
                               blocked.set_value();
                               released.wait();
                             }
                             return faults.Hook()(op, path);
                           }};
  const std::string a(150, 'a'), b(150, 'b');
  {
    Committer committer(FsyncPolicy::kAlways, milliseconds(5));
    IoError error;
    auto log = committer.Adopt(SegmentedLog::Open(
        dir_, options, [](uint64_t, uint8_t, std::string_view) {}, nullptr, &error));
    std::promise<bool> first, second, third;
    log->Append({{1, "first"}}, [&](const IoError* e, uint64_t) { first.set_value(!e); });
    blocked.get_future().wait();
    // The disk fills after two more writes: the held one ("first") and the
    // roll's (`a`, into the first segment); `b`, in the second, fails.
    faults.Fail(FileOp::kWrite, ENOSPC, "", 2);
    log->Append({{1, a}}, [&](const IoError* e, uint64_t) { second.set_value(!e); });
    log->Append({{1, b}}, [&](const IoError* e, uint64_t) { third.set_value(!e); });
    release.set_value();
    EXPECT_TRUE(first.get_future().get());
    EXPECT_TRUE(second.get_future().get()) << "synced by the roll, yet reported as failed";
    EXPECT_FALSE(third.get_future().get());
  }
  std::vector<std::string> bodies;
  Open(&bodies);
  EXPECT_EQ(bodies, (std::vector<std::string>{"first", a}));
}

// Compaction deletes segments whose contents the rewrite restates, so the
// rewrite is synced first whatever the policy; if it cannot be, nothing is
// deleted (and under `never` the written records stay).
TEST_F(CommitterTest, ACompactionDropsNothingUntilItsRewriteIsSynced) {
  testing::StorageFaults faults;
  const LogOptions options{.max_segment_bytes = 200, .faults = faults.Hook()};
  Committer committer(FsyncPolicy::kNever, milliseconds(5));
  IoError error;
  auto log = committer.Adopt(SegmentedLog::Open(
      dir_, options, [](uint64_t, uint8_t, std::string_view) {}, nullptr, &error));
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(AppendAndWait(*log, std::string(50, 'x')));
  const size_t segments = log->segments();
  ASSERT_GE(segments, 3u);
  faults.Fail(FileOp::kSync, EIO);
  log->Compact({{1, "rewrite 1"}}, UINT64_MAX);
  EXPECT_TRUE(AppendAndWait(*log, "written"));
  EXPECT_GE(faults.failed(), 1);
  EXPECT_EQ(log->segments(), segments);
  faults.Clear();
  log->Compact({{1, "rewrite 2"}}, UINT64_MAX);
  EXPECT_TRUE(AppendAndWait(*log, "after"));
  EXPECT_EQ(log->segments(), 1u);
  log.reset();
  std::vector<std::string> bodies;
  Open(&bodies);
  ASSERT_GE(bodies.size(), 2u);
  EXPECT_EQ(std::vector<std::string>(bodies.end() - 2, bodies.end()),
            (std::vector<std::string>{"rewrite 2", "after"}));
}

}  // namespace
}  // namespace basin::storage
