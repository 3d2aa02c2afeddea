#include "broker/storage/committer.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <map>
#include <thread>

#include "broker/storage/record_format.h"
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

// A put batch (one Append: its records and its put keys) is refused or kept
// whole. Here a roll falls inside the batch and the disk fails the next
// segment's write: the batch is refused, so none of it may come back after a
// restart — which it would if the roll had synced its first records into the
// old segment.
TEST_F(CommitterTest, ABatchThatMeetsARollIsRefusedOrKeptWhole) {
  const std::string first_segment = "/00000000000000000000.log";
  std::atomic<bool> full{false};
  const LogOptions options{
      .max_segment_bytes = 300, .faults = [&](FileOp op, const std::string& path) {
        return full && op == FileOp::kWrite && !path.ends_with(first_segment) ? ENOSPC : 0;
      }};
  // Each fits after "first"; both do not.
  const std::string a(130, 'a'), b(130, 'b');
  {
    Committer committer(FsyncPolicy::kAlways, milliseconds(5));
    IoError error;
    auto log = committer.Adopt(SegmentedLog::Open(
        dir_, options, [](uint64_t, uint8_t, std::string_view) {}, nullptr, &error));
    ASSERT_TRUE(AppendAndWait(*log, "first"));
    full = true;
    std::promise<bool> batch;
    log->Append({{1, a}, {1, b}}, [&](const IoError* e, uint64_t) { batch.set_value(!e); });
    EXPECT_FALSE(batch.get_future().get());
  }
  std::vector<std::string> bodies;
  Open(&bodies);
  EXPECT_EQ(bodies, (std::vector<std::string>{"first"})) << "a refused batch came back in part";
}

// Under `never` a record is answered once it is written. A roll syncs the
// segment it leaves; when that fdatasync fails, records already answered must
// stay: only what needed the roll is refused.
TEST_F(CommitterTest, UnderNeverAFailedSyncAtARollKeepsWhatWasAnswered) {
  testing::StorageFaults faults;
  const LogOptions options{.max_segment_bytes = 300, .faults = faults.Hook()};
  {
    Committer committer(FsyncPolicy::kNever, milliseconds(5));
    IoError error;
    auto log = committer.Adopt(SegmentedLog::Open(
        dir_, options, [](uint64_t, uint8_t, std::string_view) {}, nullptr, &error));
    ASSERT_TRUE(AppendAndWait(*log, "answered"));
    faults.Fail(FileOp::kSync, EIO, "/00000000000000000000.log");
    EXPECT_FALSE(AppendAndWait(*log, std::string(300, 'x'))) << "needed a roll, which failed";
    EXPECT_GE(faults.failed(), 1);
    faults.Clear();
    EXPECT_TRUE(AppendAndWait(*log, "after"));
  }
  std::vector<std::string> bodies;
  Open(&bodies);
  EXPECT_EQ(bodies, (std::vector<std::string>{"answered", "after"}));
}

// Under `never` a record counts as safe once written. When a write fails
// after whole records of a commit reached the file and the cut fails too,
// those records are overwritten with zeros (they were refused: a restart
// must not bring them back), so they must be reported failed, not written.
TEST_F(CommitterTest, UnderNeverRecordsThatAFailedCutLeftAreReportedFailed) {
  std::promise<void> blocked, release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> first_write{true}, fail_truncate{false};
  const LogOptions options{.faults = [&](FileOp op, const std::string&) {
    // The first write holds the committer, so that the next two appends
    // wait together and share one commit.
    if (op == FileOp::kWrite && first_write.exchange(false)) {
      blocked.set_value();
      released.wait();
    }
    return op == FileOp::kTruncate && fail_truncate ? EIO : 0;
  }};
  const std::string whole = "written whole, then refused";
  {
    Committer committer(FsyncPolicy::kNever, milliseconds(5));
    IoError error;
    auto log = committer.Adopt(SegmentedLog::Open(
        dir_, options, [](uint64_t, uint8_t, std::string_view) {}, nullptr, &error));
    std::promise<bool> first, second, third;
    log->Append({{1, "first"}}, [&](const IoError* e, uint64_t) { first.set_value(!e); });
    blocked.get_future().wait();
    log->Append({{1, whole}}, [&](const IoError* e, uint64_t) { second.set_value(!e); });
    log->Append({{1, std::string(100, 'x')}},
                [&](const IoError* e, uint64_t) { third.set_value(!e); });
    // The file size limit lets "first", the second group and 10 bytes of the
    // third through, then fails the write; the cut fails too.
    struct sigaction ignore {
    }, old{};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGXFSZ, &ignore, &old);
    rlimit saved{};
    ::getrlimit(RLIMIT_FSIZE, &saved);
    rlimit limit = saved;
    limit.rlim_cur = kSegmentHeaderBytes + RecordBytes(5) + RecordBytes(whole.size()) + 10;
    ::setrlimit(RLIMIT_FSIZE, &limit);
    fail_truncate = true;
    release.set_value();
    const bool first_ok = first.get_future().get();
    const bool second_ok = second.get_future().get();
    const bool third_ok = third.get_future().get();
    ::setrlimit(RLIMIT_FSIZE, &saved);
    ::sigaction(SIGXFSZ, &old, nullptr);
    fail_truncate = false;
    EXPECT_TRUE(first_ok);
    EXPECT_FALSE(second_ok) << "reported written, yet erased";
    EXPECT_FALSE(third_ok);
    EXPECT_TRUE(AppendAndWait(*log, "after"));
  }
  std::vector<std::string> bodies;
  Open(&bodies);
  EXPECT_EQ(bodies, (std::vector<std::string>{"first", "after"}));
}

// A deleted queue's log closes its files at once, although the queue (and
// with it the log) lives on while some call still holds it: an open fd
// would keep the deleted files' disk space.
TEST_F(CommitterTest, AClosedLogLetsGoOfItsFiles) {
  Committer committer(FsyncPolicy::kAlways, milliseconds(5));
  auto log = committer.Adopt(Open());
  const std::string files = fs::canonical(dir_).string() + "/";
  const auto open_files = [&] {
    int n = 0;
    for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
      std::error_code ec;
      n += fs::read_symlink(e.path(), ec).string().starts_with(files);
    }
    return n;
  };
  ASSERT_TRUE(AppendAndWait(*log, "one"));
  ASSERT_EQ(open_files(), 1);
  log->Close();
  EXPECT_EQ(open_files(), 0);
  EXPECT_EQ(log->segments(), 0u);
  log->Append({{1, "dropped"}}, [](const IoError*, uint64_t) { ADD_FAILURE() << "called back"; });
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
