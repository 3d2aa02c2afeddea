#include "broker/storage/segmented_log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "broker/storage/crc32c.h"
#include "temp_dir.h"

namespace basin::storage {
namespace {

namespace fs = std::filesystem;

struct Record {
  uint64_t position;
  uint8_t type;
  std::string body;
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
    ASSERT_EQ(log->end(), 0u);
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
  EXPECT_EQ(end, positions.back() + 13 + 3);  // header 12, type 1, "m99"
  EXPECT_EQ(*log->Append(1, "next", &error), end);
}

TEST_F(SegmentedLogTest, FullSegmentsRollAndDropWhenNothingInThemIsLive) {
  IoError error;
  uint64_t tenth = 0;
  {
    auto log = Open({.max_segment_bytes = 1000});
    for (int i = 0; i < 100; ++i) {
      const uint64_t p = *log->Append(1, std::string(50, 'x'), &error);  // 63 bytes a record
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
  EXPECT_EQ(records_.back().position + 63, log->end());
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
  EXPECT_EQ(fs::file_size(FirstSegment()), 13u + 3u);
}

TEST_F(SegmentedLogTest, DamageInTheMiddleIsReportedAndTheRestRecovered) {
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
  // Flip one byte of the second record's body.
  const int fd = ::open(FirstSegment().c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  char c = 0;
  ASSERT_EQ(::pread(fd, &c, 1, static_cast<off_t>(second + 14)), 1);
  c ^= 0x40;
  ASSERT_EQ(::pwrite(fd, &c, 1, static_cast<off_t>(second + 14)), 1);
  ::close(fd);
  Open();
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"record 1", "record 3", "record 4", "record 5"}));
  ASSERT_EQ(report_.damage.size(), 1u);
  EXPECT_EQ(report_.damage[0].offset, second);
  EXPECT_FALSE(report_.damage[0].truncated);
  EXPECT_EQ(report_.damage[0].segment, "00000000000000000000.log");
}

}  // namespace
}  // namespace basin::storage
