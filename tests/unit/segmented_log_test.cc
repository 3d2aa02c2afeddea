#include "broker/storage/segmented_log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "broker/storage/crc32c.h"
#include "broker/storage/record_format.h"
#include "storage_faults.h"
#include "temp_dir.h"

namespace basin::storage {
namespace {

namespace fs = std::filesystem;

struct Record {
  uint64_t position;
  uint8_t type;
  std::string body;
};

// Faults by operation, several at once (StorageFaults has one rule), with
// every call the log made through the hook.
struct OpFaults {
  FaultHook Hook() {
    return [this](FileOp op, const std::string& path) {
      calls.emplace_back(op, path);
      const auto it = failing.find(op);
      return it == failing.end() || path.find(path_part) == std::string::npos ? 0 : it->second;
    };
  }
  int Count(FileOp op) const {
    int n = 0;
    for (const auto& call : calls) n += call.first == op;
    return n;
  }

  std::map<FileOp, int> failing;  // errno by operation
  std::string path_part;          // and only on paths containing this
  std::vector<std::pair<FileOp, std::string>> calls;
};

class SegmentedLogTest : public ::testing::Test {
 protected:
  // Opens the log, collecting what it replays.
  std::unique_ptr<SegmentedLog> Open(LogOptions options = {}) {
    records_.clear();
    report_ = {};
    IoError error;
    auto log = SegmentedLog::Open(
        dir_, options,
        [&](uint64_t position, uint8_t type, std::string_view body) {
          records_.push_back({position, type, std::string(body)});
        },
        &report_, &error);
    EXPECT_NE(log, nullptr) << error.message;
    return log;
  }

  std::vector<std::string> Bodies() const {
    std::vector<std::string> out;
    for (const Record& r : records_) out.push_back(r.body);
    return out;
  }

  std::string FirstSegment() const { return dir_ + "/00000000000000000000.log"; }

  // The bytes of a segment file, from `offset` to its end.
  static std::string ReadBytes(const std::string& path, uint64_t offset = 0) {
    std::string out(fs::file_size(path), '\0');
    const int fd = ::open(path.c_str(), O_RDONLY);
    EXPECT_EQ(::pread(fd, out.data(), out.size(), 0), static_cast<ssize_t>(out.size()));
    ::close(fd);
    return out.substr(offset);
  }

  // Flips one bit of the first segment at `offset`: damage as a disk shows it.
  void FlipByte(uint64_t offset) const {
    const int fd = ::open(FirstSegment().c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    char c = 0;
    ASSERT_EQ(::pread(fd, &c, 1, static_cast<off_t>(offset)), 1);
    c ^= 0x40;
    ASSERT_EQ(::pwrite(fd, &c, 1, static_cast<off_t>(offset)), 1);
    ::close(fd);
  }

  // Appends small records until the log has rolled to a new segment, so the
  // first one is sealed: replay treats damage there as damage, not a torn
  // write.
  static void SealFirstSegment(SegmentedLog& log) {
    IoError error;
    while (log.segments() < 2) ASSERT_TRUE(log.Append(3, "filler", &error)) << error.message;
    ASSERT_TRUE(log.Append(3, "in the next segment", &error));
    ASSERT_TRUE(log.Sync(&error)) << error.message;
  }

  size_t Count(const std::string& body) const {
    size_t n = 0;
    for (const Record& r : records_) n += r.body == body;
    return n;
  }

  testing::TempDir tmp_;
  const std::string dir_ = tmp_.Sub("q");
  std::vector<Record> records_;
  ReplayReport report_;
};

TEST(Crc32cTest, KnownVector) {
  EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);
  // In pieces, the same.
  EXPECT_EQ(Crc32c("6789", 4, Crc32c("12345", 5)), 0xE3069283u);
  const std::string zeros(32, '\0');
  EXPECT_EQ(Crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
}

TEST_F(SegmentedLogTest, RecordsComeBackInOrderAfterReopening) {
  std::vector<uint64_t> positions;
  {
    auto log = Open();
    ASSERT_EQ(log->end(), kSegmentHeaderBytes);
    IoError error;
    for (int i = 0; i < 100; ++i) {
      positions.push_back(
          *log->Append(static_cast<uint8_t>(i % 3), "m" + std::to_string(i), &error));
    }
    ASSERT_TRUE(log->Sync(&error)) << error.message;
  }
  auto log = Open();
  ASSERT_EQ(records_.size(), 100u);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(records_[i].position, positions[i]);
    EXPECT_EQ(records_[i].type, i % 3);
    EXPECT_EQ(records_[i].body, "m" + std::to_string(i));
  }
  EXPECT_TRUE(report_.damage.empty());
  // Appends continue after the last record.
  IoError error;
  const uint64_t end = log->end();
  EXPECT_EQ(end, positions.back() + RecordBytes(3));  // "m99"
  EXPECT_EQ(*log->Append(1, "next", &error), end);
}

TEST_F(SegmentedLogTest, FullSegmentsRollAndDropWhenNothingInThemIsLive) {
  IoError error;
  uint64_t tenth = 0;
  {
    auto log = Open({.max_segment_bytes = 1000});
    for (int i = 0; i < 100; ++i) {
      const uint64_t p = *log->Append(1, std::string(50, 'x'), &error);
      if (i == 50) tenth = p;
    }
    ASSERT_TRUE(log->Sync(&error));
    EXPECT_GT(log->segments(), 5u);
    const size_t before = log->segments();
    ASSERT_TRUE(log->DropBefore(tenth, &error));
    EXPECT_LT(log->segments(), before);
  }
  auto log = Open({.max_segment_bytes = 1000});
  // Whole segments went: what is left starts at or before record 50.
  ASSERT_FALSE(records_.empty());
  EXPECT_LE(records_.front().position, tenth);
  EXPECT_EQ(records_.back().position + RecordBytes(50), log->end());
  EXPECT_TRUE(report_.damage.empty());
}

TEST_F(SegmentedLogTest, TornTailIsCutOffAndAppendsContinueCleanly) {
  {
    auto log = Open();
    IoError error;
    for (const char* body : {"one", "two", "three"}) log->Append(1, body, &error);
    ASSERT_TRUE(log->Sync(&error));
  }
  // A crash in the middle of writing the third record.
  const auto full = fs::file_size(FirstSegment());
  fs::resize_file(FirstSegment(), full - 3);
  {
    auto log = Open();
    EXPECT_EQ(Bodies(), (std::vector<std::string>{"one", "two"}));
    ASSERT_EQ(report_.damage.size(), 1u);
    EXPECT_TRUE(report_.damage[0].truncated);
    IoError error;
    log->Append(1, "four", &error);
    ASSERT_TRUE(log->Sync(&error));
  }
  Open();
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"one", "two", "four"}));
  EXPECT_TRUE(report_.damage.empty());
}

TEST_F(SegmentedLogTest, GarbageAfterTheLastRecordIsCutOff) {
  {
    auto log = Open();
    IoError error;
    log->Append(1, "one", &error);
    ASSERT_TRUE(log->Sync(&error));
  }
  {
    std::FILE* f = std::fopen(FirstSegment().c_str(), "ab");
    std::fputs("\x01\x02garbage that is not a record", f);
    std::fclose(f);
  }
  Open();
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"one"}));
  ASSERT_EQ(report_.damage.size(), 1u);
  EXPECT_TRUE(report_.damage[0].truncated);
  EXPECT_EQ(fs::file_size(FirstSegment()), kSegmentHeaderBytes + RecordBytes(3));
}

// Damage to a sealed segment is damage to the disk, not a torn write: it is
// reported and skipped, and what follows it is recovered.
TEST_F(SegmentedLogTest, DamageInASealedSegmentIsReportedAndTheRestRecovered) {
  uint64_t second = 0;
  {
    auto log = Open({.max_segment_bytes = 1000});
    IoError error;
    for (int i = 1; i <= 5; ++i) {
      const uint64_t p = *log->Append(1, "record " + std::to_string(i), &error);
      if (i == 2) second = p;
    }
    SealFirstSegment(*log);
  }
  FlipByte(second + RecordBytes(0) + 1);  // in the second record's body
  Open({.max_segment_bytes = 1000});
  const std::vector<std::string> bodies = Bodies();
  EXPECT_EQ(std::vector<std::string>(bodies.begin(), bodies.begin() + 4),
            (std::vector<std::string>{"record 1", "record 3", "record 4", "record 5"}));
  ASSERT_EQ(report_.damage.size(), 1u);
  EXPECT_EQ(report_.damage[0].offset, second);
  EXPECT_EQ(report_.damage[0].skipped, RecordBytes(8));
  EXPECT_FALSE(report_.damage[0].truncated);
  EXPECT_EQ(report_.damage[0].segment, "00000000000000000000.log");
}

// In the segment being written, damage that records still verifying follow
// is not a torn write (nothing is written after one): it is skipped and
// reported as in a sealed segment, and the records after it — answered long
// ago, perhaps — come back. Appends go on after the last of them.
TEST_F(SegmentedLogTest, DamageInTheTailFollowedByGoodRecordsIsSkippedNotCutOff) {
  uint64_t second = 0;
  {
    auto log = Open();
    IoError error;
    for (int i = 1; i <= 5; ++i) {
      const uint64_t p = *log->Append(1, "record " + std::to_string(i), &error);
      if (i == 2) second = p;
    }
    ASSERT_TRUE(log->Sync(&error));
  }
  const auto size = fs::file_size(FirstSegment());
  FlipByte(second + RecordBytes(0) + 1);
  {
    auto log = Open();
    EXPECT_EQ(Bodies(), (std::vector<std::string>{"record 1", "record 3", "record 4", "record 5"}));
    ASSERT_EQ(report_.damage.size(), 1u);
    EXPECT_FALSE(report_.damage[0].truncated);
    EXPECT_EQ(report_.damage[0].offset, second);
    EXPECT_EQ(report_.damage[0].skipped, RecordBytes(8));
    EXPECT_EQ(fs::file_size(FirstSegment()), size);
    IoError error;
    ASSERT_TRUE(log->Append(1, "record 6", &error));
    ASSERT_TRUE(log->Sync(&error));
  }
  Open();
  EXPECT_EQ(Bodies(),
            (std::vector<std::string>{"record 1", "record 3", "record 4", "record 5", "record 6"}));
}

// Damage in the tail that nothing verifiable follows is a torn write, also
// after a damaged stretch that was skipped: two stretches — damage, good
// records, then a torn end — the first skipped, the second cut off.
TEST_F(SegmentedLogTest, ATornWriteAfterSkippedDamageInTheTailIsCutOff) {
  uint64_t second = 0, fifth = 0;
  {
    auto log = Open();
    IoError error;
    for (int i = 1; i <= 5; ++i) {
      const uint64_t p = *log->Append(1, "record " + std::to_string(i), &error);
      if (i == 2) second = p;
      if (i == 5) fifth = p;
    }
    ASSERT_TRUE(log->Sync(&error));
  }
  FlipByte(second + RecordBytes(0) + 1);
  const auto full = fs::file_size(FirstSegment());
  fs::resize_file(FirstSegment(), full - 3);  // record 5 torn
  {
    auto log = Open();
    EXPECT_EQ(Bodies(), (std::vector<std::string>{"record 1", "record 3", "record 4"}));
    ASSERT_EQ(report_.damage.size(), 2u);
    EXPECT_EQ(report_.damage[0].offset, second);
    EXPECT_EQ(report_.damage[0].skipped, RecordBytes(8));
    EXPECT_FALSE(report_.damage[0].truncated);
    EXPECT_EQ(report_.damage[1].offset, fifth);
    EXPECT_EQ(report_.damage[1].skipped, RecordBytes(8) - 3);
    EXPECT_TRUE(report_.damage[1].truncated);
    EXPECT_EQ(fs::file_size(FirstSegment()), fifth);
    IoError error;
    ASSERT_TRUE(log->Append(1, "record 6", &error));
    ASSERT_TRUE(log->Sync(&error));
  }
  Open();
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"record 1", "record 3", "record 4", "record 6"}));
  ASSERT_EQ(report_.damage.size(), 1u);
  EXPECT_FALSE(report_.damage[0].truncated);
}

// EMFILE or ENOSPC when the next segment is created: the records synced so
// far stay good, the log keeps taking records in the segment it has (past its
// size), and it rolls at a later append once it can.
TEST_F(SegmentedLogTest, ARollThatCannotCreateTheNextSegmentKeepsTheLogWritable) {
  testing::StorageFaults faults;
  std::vector<std::string> bodies;
  auto now = std::chrono::steady_clock::time_point{};
  const LogOptions options{
      .max_segment_bytes = 200, .faults = faults.Hook(), .clock = [&] { return now; }};
  {
    auto log = Open(options);
    faults.Fail(FileOp::kCreate, EMFILE);
    IoError error;
    for (int i = 0; i < 10; ++i) {
      bodies.push_back("record " + std::to_string(i) + std::string(40, '.'));
      ASSERT_TRUE(log->Append(1, bodies.back(), &error)) << error.message;
    }
    ASSERT_TRUE(log->Sync(&error)) << error.message;
    EXPECT_GT(faults.failed(), 0);
    EXPECT_EQ(log->segments(), 1u);
    faults.Clear();
    now += options.roll_retry;
    bodies.push_back("after the limit was lifted");
    ASSERT_TRUE(log->Append(1, bodies.back(), &error));
    EXPECT_EQ(log->segments(), 2u);
    ASSERT_TRUE(log->Sync(&error)) << error.message;
  }
  Open({.max_segment_bytes = 200});
  EXPECT_EQ(Bodies(), bodies);
  EXPECT_TRUE(report_.damage.empty());
}

// While the next segment cannot be created, a roll is tried once per
// roll_retry, not at every append: each try costs a failing open (under
// ENOSPC a create, a header, an fdatasync and an unlink).
TEST_F(SegmentedLogTest, AFailedRollIsNotRetriedAtEveryAppend) {
  testing::StorageFaults faults;
  auto now = std::chrono::steady_clock::time_point{};
  const LogOptions options{
      .max_segment_bytes = 200, .faults = faults.Hook(), .clock = [&] { return now; }};
  auto log = Open(options);
  faults.Fail(FileOp::kCreate, ENOSPC);
  IoError error;
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(log->Append(1, std::string(40, 'x'), &error));
  EXPECT_EQ(faults.failed(), 1);
  now += options.roll_retry - std::chrono::milliseconds(1);
  ASSERT_TRUE(log->Append(1, "not yet", &error));
  EXPECT_EQ(faults.failed(), 1);
  now += std::chrono::milliseconds(1);
  ASSERT_TRUE(log->Append(1, "tried again", &error));
  EXPECT_EQ(faults.failed(), 2);
  faults.Clear();
  now += options.roll_retry;
  ASSERT_TRUE(log->Append(1, "rolled", &error));
  EXPECT_EQ(log->segments(), 2u);
  ASSERT_TRUE(log->Sync(&error)) << error.message;
}

// The fdatasync of the segment a roll leaves fails (under `never` that is
// how a roll fails; the next segment was created): the roll is not tried
// again before roll_retry either, or every append needing it would pay for
// a create, a header, two fsyncs and an unlink. Meanwhile records go into the
// current segment, past its size. The abandoned file's unlink is followed by
// a directory fsync, so that a crash cannot bring it back.
TEST_F(SegmentedLogTest, AFailedSyncAtARollIsNotRetriedAtEveryAppend) {
  OpFaults faults;
  auto now = std::chrono::steady_clock::time_point{};
  const LogOptions options{
      .max_segment_bytes = 200, .faults = faults.Hook(), .clock = [&] { return now; }};
  std::vector<std::string> bodies;
  {
    auto log = Open(options);
    log->AnswerWhenWritten();
    IoError error;
    for (int i = 0; i < 2; ++i) {
      bodies.push_back(std::string(40, 'a' + i));
      ASSERT_TRUE(log->Append(1, bodies.back(), &error)) << error.message;
    }
    ASSERT_TRUE(log->Flush(&error)) << error.message;
    faults.path_part = "/00000000000000000000.log";  // not the new segment's header
    faults.failing[FileOp::kSync] = EIO;
    faults.calls.clear();
    ASSERT_FALSE(log->Append(1, std::string(100, 'x'), &error)) << "needed a roll, which failed";
    EXPECT_EQ(error.error, EIO);
    EXPECT_EQ(faults.Count(FileOp::kCreate), 1);
    char second[32];
    std::snprintf(second, sizeof second, "/%020llu.log",
                  static_cast<unsigned long long>(log->end()));
    ASSERT_GE(faults.calls.size(), 2u);
    const auto& unlink = faults.calls[faults.calls.size() - 2];
    EXPECT_EQ(unlink.first, FileOp::kUnlink);
    EXPECT_TRUE(unlink.second.ends_with(second)) << unlink.second;
    EXPECT_EQ(faults.calls.back(), std::make_pair(FileOp::kSyncDir, dir_));
    EXPECT_FALSE(fs::exists(dir_ + second));
    for (int i = 0; i < 10; ++i) {
      bodies.push_back("within roll_retry " + std::to_string(i));
      ASSERT_TRUE(log->Append(1, bodies.back(), &error)) << error.message;
      ASSERT_TRUE(log->Flush(&error)) << error.message;
    }
    EXPECT_EQ(faults.Count(FileOp::kCreate), 1) << "the roll was tried again at once";
    EXPECT_EQ(log->segments(), 1u);
    faults.failing.clear();
    now += options.roll_retry;
    bodies.push_back("rolled");
    ASSERT_TRUE(log->Append(1, bodies.back(), &error)) << error.message;
    EXPECT_EQ(faults.Count(FileOp::kCreate), 2);
    EXPECT_EQ(log->segments(), 2u);
    ASSERT_TRUE(log->Sync(&error)) << error.message;
  }
  Open({.max_segment_bytes = 200});
  EXPECT_EQ(Bodies(), bodies);
  EXPECT_TRUE(report_.damage.empty());
}

// Stray bytes end the tail (a failed write that could not be cut off), so
// the next append must roll; when the next segment cannot be created
// either, appends fail at once with the create's error — also those inside
// roll_retry, which try no create — until the roll succeeds.
TEST_F(SegmentedLogTest, WhileARollThatMustHappenCannotAppendsFailWithItsError) {
  OpFaults faults;
  auto now = std::chrono::steady_clock::time_point{};
  const LogOptions options{.faults = faults.Hook(), .clock = [&] { return now; }};
  {
    auto log = Open(options);
    IoError error;
    ASSERT_TRUE(log->Append(1, "before", &error));
    ASSERT_TRUE(log->Sync(&error)) << error.message;
    faults.failing = {{FileOp::kSync, EIO}, {FileOp::kTruncate, EIO}};
    ASSERT_TRUE(log->Append(1, "refused", &error));
    ASSERT_FALSE(log->Sync(&error));
    faults.failing = {{FileOp::kCreate, EMFILE}};
    faults.calls.clear();
    EXPECT_FALSE(log->Append(1, "no room", &error));
    EXPECT_EQ(error.error, EMFILE) << error.message;
    EXPECT_EQ(faults.Count(FileOp::kCreate), 1);
    error = {};
    EXPECT_FALSE(log->Append(1, "still no room", &error));
    EXPECT_EQ(error.error, EMFILE) << error.message;
    EXPECT_NE(error.message.find("create"), std::string::npos) << error.message;
    EXPECT_EQ(faults.Count(FileOp::kCreate), 1) << "tried again inside roll_retry";
    EXPECT_EQ(log->segments(), 1u);
    faults.failing.clear();
    now += options.roll_retry;
    ASSERT_TRUE(log->Append(1, "after", &error)) << error.message;
    EXPECT_EQ(log->segments(), 2u);
    ASSERT_TRUE(log->Sync(&error)) << error.message;
  }
  Open();
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"before", "after"}));
}

// A write that fails after whole records of a group reached the file, and a
// cut that fails too: those records would verify at replay — the log goes on
// in a new segment, so they are no torn tail — and come back although the
// batch was refused. They are overwritten with zeros instead.
TEST_F(SegmentedLogTest, RefusedRecordsThatCannotBeCutOffAreErased) {
  testing::StorageFaults faults;
  const std::string whole = "refused, yet written whole";
  IoError error;
  uint64_t size = 0;
  {
    auto log = Open({.faults = faults.Hook()});
    log->Append(1, "before", &error);
    ASSERT_TRUE(log->Sync(&error));
    size = fs::file_size(FirstSegment());
    // The file size limit lets the group's first record and 10 bytes of its
    // second through, then fails the write.
    struct sigaction ignore {
    }, old{};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGXFSZ, &ignore, &old);
    rlimit saved{};
    ::getrlimit(RLIMIT_FSIZE, &saved);
    rlimit limit = saved;
    limit.rlim_cur = size + RecordBytes(whole.size()) + 10;
    ::setrlimit(RLIMIT_FSIZE, &limit);
    faults.Fail(FileOp::kTruncate, EIO);
    const std::string rest(100, 'x');
    const std::vector<LogRecord> group{{1, whole}, {1, rest}};
    ASSERT_TRUE(log->Append(group, &error));
    const bool flushed = log->Flush(&error);
    ::setrlimit(RLIMIT_FSIZE, &saved);
    ::sigaction(SIGXFSZ, &old, nullptr);
    faults.Clear();
    ASSERT_FALSE(flushed);
    ASSERT_EQ(fs::file_size(FirstSegment()), size + RecordBytes(whole.size()) + 10);
    EXPECT_EQ(ReadBytes(FirstSegment(), size), std::string(RecordBytes(whole.size()) + 10, '\0'));
    ASSERT_TRUE(log->Append(1, "after", &error)) << error.message;
    EXPECT_EQ(log->segments(), 2u);
    ASSERT_TRUE(log->Sync(&error)) << error.message;
  }
  Open();
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"before", "after"}));
  ASSERT_EQ(report_.damage.size(), 1u);
  EXPECT_EQ(report_.damage[0].offset, size);
  EXPECT_FALSE(report_.damage[0].truncated);
}

// If the zeros cannot be written either, the log takes nothing more — no
// append, no sync, which would make the refused records durable — until
// they can; then it goes on, and the refused records never come back.
TEST_F(SegmentedLogTest, WhileRefusedRecordsCannotBeErasedTheLogTakesNothing) {
  OpFaults faults;
  {
    auto log = Open({.faults = faults.Hook()});
    IoError error;
    ASSERT_TRUE(log->Append(1, "before", &error));
    ASSERT_TRUE(log->Sync(&error)) << error.message;
    faults.failing = {{FileOp::kSync, EIO}, {FileOp::kTruncate, EIO}, {FileOp::kErase, EIO}};
    ASSERT_TRUE(log->Append(1, "refused", &error));
    ASSERT_FALSE(log->Sync(&error));
    faults.failing.erase(FileOp::kSync);
    error = {};
    EXPECT_FALSE(log->Append(1, "while they are there", &error));
    EXPECT_EQ(error.error, EIO);
    EXPECT_NE(error.message.find("refused records"), std::string::npos) << error.message;
    faults.calls.clear();
    EXPECT_FALSE(log->Sync(&error));
    EXPECT_EQ(faults.Count(FileOp::kSync), 0) << "a sync would make the refused records durable";
    faults.failing.clear();
    ASSERT_TRUE(log->Append(1, "after", &error)) << error.message;
    ASSERT_TRUE(log->Sync(&error)) << error.message;
  }
  Open();
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"before", "after"}));
}

// A group (a put batch) is never split by a roll: it goes whole into the next
// segment, or whole past the size of the current one if it is larger than a
// segment. Split, a batch refused for its later records could come back in
// part after a restart.
TEST_F(SegmentedLogTest, AGroupIsNeverSplitBetweenSegments) {
  auto log = Open({.max_segment_bytes = 300});
  IoError error;
  ASSERT_TRUE(log->Append(1, "first", &error));
  // Each would fit after "first"; both do not.
  const std::string a(130, 'a'), b(130, 'b');
  const std::vector<LogRecord> group{{1, a}, {1, b}};
  const auto position = log->Append(group, &error);
  ASSERT_TRUE(position) << error.message;
  EXPECT_EQ(log->segments(), 2u);
  const uint64_t second_segment = kSegmentHeaderBytes + RecordBytes(5);
  EXPECT_EQ(*position, second_segment + kSegmentHeaderBytes) << "the group starts a new segment";
  EXPECT_EQ(log->end(), *position + RecordBytes(130) * 2);
  const std::string big(200, 'c');
  const std::vector<LogRecord> larger_than_a_segment{{1, big}, {1, big}};
  ASSERT_TRUE(log->Append(larger_than_a_segment, &error));
  EXPECT_EQ(log->segments(), 3u);
  ASSERT_TRUE(log->Sync(&error)) << error.message;
  log.reset();
  Open({.max_segment_bytes = 300});
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"first", a, b, big, big}));
}

// A client's payload can hold anything, including the exact bytes of a
// record. When damage before it sends replay looking for the next record,
// that image must not be taken for one: here it is a copy of an earlier
// record of the same segment, so nothing but its position tells it apart.
TEST_F(SegmentedLogTest, ARecordImageInsideADamagedRecordIsNotReplayedFromASealedSegment) {
  IoError error;
  {
    auto log = Open({.max_segment_bytes = 4096});
    const uint64_t forged = *log->Append(1, "FORGED", &error);
    ASSERT_TRUE(log->Sync(&error));
    const std::string image = ReadBytes(FirstSegment(), forged);
    const uint64_t carrier = *log->Append(2, "client bytes " + image + " more bytes", &error);
    log->Append(1, "after", &error);
    SealFirstSegment(*log);
    const uint64_t body = image.size() - 6;  // where a record's body starts
    FlipByte(carrier + body + 2);            // in the carrier, before the image
  }
  Open({.max_segment_bytes = 4096});
  EXPECT_EQ(Count("FORGED"), 1u) << "the image in the payload was replayed as a record";
  EXPECT_EQ(Count("after"), 1u) << "a sealed segment recovers what follows the damage";
  ASSERT_EQ(report_.damage.size(), 1u);
  EXPECT_FALSE(report_.damage[0].truncated);
}

// The same in the segment being written: what follows the damage is
// recovered, the image inside the payload is not.
TEST_F(SegmentedLogTest, ARecordImageInsideADamagedRecordIsNotReplayedFromTheTail) {
  IoError error;
  {
    auto log = Open();
    const uint64_t forged = *log->Append(1, "FORGED", &error);
    ASSERT_TRUE(log->Sync(&error));
    const std::string image = ReadBytes(FirstSegment(), forged);
    const uint64_t carrier = *log->Append(2, "client bytes " + image + " more bytes", &error);
    log->Append(1, "after", &error);
    ASSERT_TRUE(log->Sync(&error));
    FlipByte(carrier + image.size() - 6 + 2);
  }
  Open();
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"FORGED", "after"}));
  ASSERT_EQ(report_.damage.size(), 1u);
  EXPECT_FALSE(report_.damage[0].truncated);
}

// Damage followed by thousands of byte patterns that start like a record
// header, each claiming a long body: replay rejects each in constant work, so
// recovery stays linear in the segment's size. Work is counted in bytes
// checksummed, not timed.
TEST_F(SegmentedLogTest, ManyFakeRecordHeadersAfterDamageRecoverInLinearTime) {
  IoError error;
  {
    auto log = Open({.max_segment_bytes = 128 << 10});
    const uint64_t real = *log->Append(1, "real", &error);
    ASSERT_TRUE(log->Sync(&error));
    const std::string magic = ReadBytes(FirstSegment(), real).substr(0, 4);
    std::string fakes;
    const char claimed[4] = {0, static_cast<char>(0xC0), 0, 0};  // a 48 KiB body
    while (fakes.size() < (96 << 10)) fakes += magic + std::string(claimed, 4) + "crc!";
    const uint64_t carrier = *log->Append(2, fakes, &error);
    log->Append(1, "after", &error);
    SealFirstSegment(*log);
    FlipByte(carrier + 8);  // the carrier's checksum
  }
  Open({.max_segment_bytes = 128 << 10});
  EXPECT_EQ(Count("real"), 1u);
  EXPECT_EQ(Count("after"), 1u);
  const uint64_t size = fs::file_size(FirstSegment());
  EXPECT_LE(report_.checked_bytes, 4 * size)
      << "replay checked " << report_.checked_bytes << " bytes of a " << size << "-byte segment";
}

// A 20-digit name past 2^64 is not a segment this log wrote: recovery leaves
// it alone and says so, rather than failing to parse it.
TEST_F(SegmentedLogTest, AFileNamedLikeASegmentButOutOfRangeIsLeftAlone) {
  {
    auto log = Open();
    IoError error;
    log->Append(1, "one", &error);
    ASSERT_TRUE(log->Sync(&error));
  }
  const std::string odd = dir_ + "/99999999999999999999.log";
  std::FILE* f = std::fopen(odd.c_str(), "wb");
  std::fputs("not a segment", f);
  std::fclose(f);
  Open();
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"one"}));
  EXPECT_EQ(report_.ignored, (std::vector<std::string>{"99999999999999999999.log"}));
  EXPECT_TRUE(fs::exists(odd));
}

// A write that fails halfway leaves part of a record in the file. If that
// cannot be cut off either, replay would take it for a torn write and cut
// off whatever followed it, so the log goes on in a new segment and the
// stray bytes end a sealed one, where replay skips them.
TEST_F(SegmentedLogTest, BytesThatCannotBeCutOffEndTheirSegment) {
  testing::StorageFaults faults;
  IoError error;
  {
    auto log = Open({.faults = faults.Hook()});
    log->Append(1, "before", &error);
    ASSERT_TRUE(log->Sync(&error));
    const auto size = fs::file_size(FirstSegment());
    // The file size limit makes the next write a partial one.
    struct sigaction ignore {
    }, old{};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGXFSZ, &ignore, &old);
    rlimit saved{};
    ::getrlimit(RLIMIT_FSIZE, &saved);
    rlimit limit = saved;
    limit.rlim_cur = size + 10;
    ::setrlimit(RLIMIT_FSIZE, &limit);
    faults.Fail(FileOp::kTruncate, EIO);
    log->Append(1, std::string(100, 'x'), &error);
    const bool synced = log->Sync(&error);
    ::setrlimit(RLIMIT_FSIZE, &saved);
    ::sigaction(SIGXFSZ, &old, nullptr);
    faults.Clear();
    ASSERT_FALSE(synced);
    ASSERT_EQ(fs::file_size(FirstSegment()), size + 10);
    ASSERT_TRUE(log->Append(1, "after", &error)) << error.message;
    EXPECT_EQ(log->segments(), 2u);
    ASSERT_TRUE(log->Sync(&error)) << error.message;
  }
  Open();
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"before", "after"}));
  ASSERT_EQ(report_.damage.size(), 1u);
  EXPECT_EQ(report_.damage[0].skipped, 10u);
  EXPECT_FALSE(report_.damage[0].truncated);
}

// A log written before segment headers (format 1) still replays; its last
// segment is sealed and appends go on in a format-2 segment after it.
TEST_F(SegmentedLogTest, AFormatOneLogStillReadsAndGoesOnInANewSegment) {
  fs::create_directories(dir_);
  std::string v1;
  for (const std::string body : {"old one", "old two"}) {
    const std::string type_and_body = "\x01" + body;
    const uint32_t words[3] = {0xB45171A5, static_cast<uint32_t>(type_and_body.size()),
                               Crc32c(type_and_body.data(), type_and_body.size())};
    v1.append(reinterpret_cast<const char*>(words), sizeof words);  // little-endian, as x86
    v1 += type_and_body;
  }
  v1 += "torn";
  std::FILE* f = std::fopen(FirstSegment().c_str(), "wb");
  std::fwrite(v1.data(), 1, v1.size(), f);
  std::fclose(f);
  IoError error;
  {
    auto log = Open();
    EXPECT_EQ(Bodies(), (std::vector<std::string>{"old one", "old two"}));
    ASSERT_EQ(report_.damage.size(), 1u);
    EXPECT_TRUE(report_.damage[0].truncated);
    EXPECT_EQ(log->segments(), 2u);
    ASSERT_TRUE(log->Append(1, "new", &error));
    ASSERT_TRUE(log->Sync(&error));
  }
  Open();
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"old one", "old two", "new"}));
  EXPECT_TRUE(report_.damage.empty());
}

// A segment of a later format is not this broker's to read or append to: the
// log does not open, and the file is untouched.
TEST_F(SegmentedLogTest, ASegmentOfALaterFormatIsNotOpened) {
  {
    auto log = Open();
    IoError error;
    log->Append(1, "one", &error);
    ASSERT_TRUE(log->Sync(&error));
  }
  std::string bytes = ReadBytes(FirstSegment());
  bytes[4] = 3;  // the format version
  {
    std::FILE* f = std::fopen(FirstSegment().c_str(), "wb");
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  }
  IoError error;
  EXPECT_EQ(SegmentedLog::Open(
                dir_, {}, [](uint64_t, uint8_t, std::string_view) {}, nullptr, &error),
            nullptr);
  EXPECT_NE(error.message.find("later log format"), std::string::npos) << error.message;
  EXPECT_EQ(ReadBytes(FirstSegment()), bytes);
}

// The tail's own header damaged: not a torn write (headers are synced before
// any record), so the file is kept as it is and the log goes on after it.
TEST_F(SegmentedLogTest, ATailWhoseHeaderIsDamagedIsKeptAndTheLogGoesOn) {
  {
    auto log = Open();
    IoError error;
    log->Append(1, "one", &error);
    ASSERT_TRUE(log->Sync(&error));
  }
  FlipByte(20);  // in the salt
  const auto size = fs::file_size(FirstSegment());
  {
    auto log = Open();
    EXPECT_TRUE(Bodies().empty());
    ASSERT_EQ(report_.damage.size(), 1u);
    EXPECT_FALSE(report_.damage[0].truncated);
    EXPECT_EQ(report_.damage[0].skipped, size);
    EXPECT_EQ(log->segments(), 2u);
    IoError error;
    ASSERT_TRUE(log->Append(1, "two", &error));
    ASSERT_TRUE(log->Sync(&error));
  }
  EXPECT_EQ(fs::file_size(FirstSegment()), size);
  Open();
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"two"}));
}

// A crash while a segment was being created leaves a torn header (the
// header is synced before any record, so nothing follows it): the file is
// started again. An empty file a failed roll left inside the log's positions
// holds nothing either, and is removed.
TEST_F(SegmentedLogTest, LeftoversOfSegmentCreationHoldNothingAndAreCleanedUp) {
  uint64_t second = 0;
  {
    auto log = Open({.max_segment_bytes = 100});
    IoError error;
    log->Append(1, std::string(80, 'a'), &error);
    second = *log->Append(1, std::string(80, 'b'), &error);
    ASSERT_TRUE(log->Sync(&error));
    ASSERT_EQ(log->segments(), 2u);
  }
  char name[32];
  std::snprintf(name, sizeof name, "/%020llu.log", static_cast<unsigned long long>(second) - 28);
  fs::resize_file(dir_ + name, 10);  // the second segment: a torn header
  std::FILE* f =
      std::fopen((dir_ + "/00000000000000000050.log").c_str(), "wb");  // inside the first
  std::fclose(f);
  {
    auto log = Open({.max_segment_bytes = 100});
    EXPECT_EQ(Bodies(), (std::vector<std::string>{std::string(80, 'a')}));
    EXPECT_EQ(report_.removed, (std::vector<std::string>{"00000000000000000050.log"}));
    ASSERT_EQ(report_.damage.size(), 1u);
    EXPECT_TRUE(report_.damage[0].truncated);
    IoError error;
    ASSERT_TRUE(log->Append(1, "c", &error));
    ASSERT_TRUE(log->Sync(&error));
  }
  Open({.max_segment_bytes = 100});
  EXPECT_EQ(Bodies(), (std::vector<std::string>{std::string(80, 'a'), "c"}));
  EXPECT_TRUE(report_.damage.empty());
}

}  // namespace
}  // namespace basin::storage
