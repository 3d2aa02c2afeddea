#include "broker/storage/queue_records.h"

#include <gtest/gtest.h>

#include "broker/storage/queue_definition.h"
#include "broker/storage/segmented_log.h"
#include "temp_dir.h"

namespace basin::storage {
namespace {

uint8_t Type(QueueRecord r) { return static_cast<uint8_t>(r); }

TEST(QueueRecordsTest, ReplayKeepsWhatIsLiveAndCountsDeliveries) {
  QueueReplay r;
  uint64_t position = 0;
  auto apply = [&](QueueRecord type, const std::string& body) {
    EXPECT_TRUE(r.Apply(position, Type(type), body));
    position += 100;
  };
  apply(QueueRecord::kDefined, "max_size=10");
  for (uint64_t id = 1; id <= 5; ++id)
    apply(QueueRecord::kPut, EncodePut(id, "m" + std::to_string(id)));
  apply(QueueRecord::kDelivered, EncodeIds({2, 3}));
  apply(QueueRecord::kDone, EncodeIds({1, 3}));
  apply(QueueRecord::kDelivered, EncodeIds({2}));
  apply(QueueRecord::kDone, EncodeIds({99}));  // unknown: its put was dropped long ago
  apply(QueueRecord::kClosed, "");
  EXPECT_EQ(r.definition(), "max_size=10");
  ASSERT_EQ(r.live().size(), 3u);
  std::vector<uint64_t> ids;
  for (const auto& [id, m] : r.live()) ids.push_back(id);
  EXPECT_EQ(ids, (std::vector<uint64_t>{2, 4, 5}));
  EXPECT_EQ(r.live().at(2).message, "m2");
  EXPECT_EQ(r.live().at(2).deliveries, 2u);
  EXPECT_EQ(r.live().at(4).deliveries, 0u);
  EXPECT_TRUE(r.closed());
  EXPECT_EQ(r.next_id(), 6u);
  EXPECT_EQ(r.live().at(2).position, 200u);  // the oldest live put, where compaction stops
}

TEST(QueueRecordsTest, IdsAreNeverReusedAndBadBodiesAreRefused) {
  QueueReplay r;
  EXPECT_TRUE(r.Apply(0, Type(QueueRecord::kPut), EncodePut(300, "big id")));
  EXPECT_TRUE(r.Apply(1, Type(QueueRecord::kDone), EncodeIds({300})));
  EXPECT_TRUE(r.live().empty());
  EXPECT_EQ(r.next_id(), 301u);
  EXPECT_FALSE(r.Apply(2, Type(QueueRecord::kDone), std::string(1, '\x80')));  // cut varint
  EXPECT_FALSE(r.Apply(3, 77, ""));                                            // unknown type
}

// A message's attributes go to the log as wall-clock times and come back
// exactly; an attribute a newer broker wrote is not guessed at.
TEST(QueueRecordsTest, PutAttributesRoundTripAndAnUnknownOneIsRefused) {
  core::MessageAttrs attrs;
  attrs.ready_at = core::TimePoint(std::chrono::seconds(100));
  attrs.expires_at = core::TimePoint(std::chrono::seconds(200));
  attrs.priority = 7;
  attrs.group = "customer-42";
  auto m = core::Message::Make(5, "payload", {{"k", "v"}}, attrs);
  const core::Duration offset = std::chrono::seconds(1'000'000);
  QueueReplay replay;
  ASSERT_TRUE(
      replay.Apply(0, static_cast<uint8_t>(QueueRecord::kPutAttrs), EncodePutAttrs(*m, offset)));
  const QueueReplay::Live& live = replay.live().at(5);
  EXPECT_EQ(live.attrs.ready_at, 1'000'100'000'000'000);
  EXPECT_EQ(live.attrs.expires_at, 1'000'200'000'000'000);
  EXPECT_EQ(live.attrs.priority, 7);
  EXPECT_EQ(live.attrs.group, "customer-42");
  auto back = core::Message::Decode(5, 0, live.message);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back.value()->payload(), "payload");
  EXPECT_EQ(back.value()->headers(), (core::Headers{{"k", "v"}}));
  EXPECT_EQ(replay.next_id(), 6u);

  // One attribute, tag 9, that this broker does not know.
  std::string unknown = "\x06\x01\x09\x01";
  m->EncodeTo(unknown);
  EXPECT_FALSE(replay.Apply(1, static_cast<uint8_t>(QueueRecord::kPutAttrs), unknown));
  EXPECT_FALSE(replay.live().contains(6));
}

// A retry delay applies while no later hand-out is recorded, whichever
// order the retry and the delivery it follows were written in.
TEST(QueueRecordsTest, ARetryHoldsUntilTheNextDelivery) {
  auto m = core::Message::Make(3, "job", {});
  const auto apply = [](QueueReplay& r, QueueRecord type, const std::string& body) {
    EXPECT_TRUE(r.Apply(0, static_cast<uint8_t>(type), body));
  };
  const core::QueueJournal::Retry retry{3, 1, core::TimePoint(std::chrono::seconds(50))};
  const std::string retried = EncodeRetry(retry, std::chrono::seconds(0));
  for (bool late_delivery : {false, true}) {
    QueueReplay r;
    apply(r, QueueRecord::kPut, EncodePut(*m));
    if (!late_delivery) apply(r, QueueRecord::kDelivered, EncodeIds({3}));
    apply(r, QueueRecord::kRetry, retried);
    if (late_delivery) apply(r, QueueRecord::kDelivered, EncodeIds({3}));
    const QueueReplay::Live& live = r.live().at(3);
    EXPECT_TRUE(live.delayed()) << late_delivery;
    EXPECT_EQ(live.attrs.ready_at, 50'000'000'000);
    apply(r, QueueRecord::kDelivered, EncodeIds({3}));  // handed out again
    EXPECT_FALSE(r.live().at(3).delayed());
  }
  QueueReplay r;
  apply(r, QueueRecord::kRetry, retried);  // its put is gone: nothing to hold
  EXPECT_TRUE(r.live().empty());
  EXPECT_FALSE(r.Apply(0, static_cast<uint8_t>(QueueRecord::kRetry), "\x03"));
}

TEST(QueueRecordsTest, ALogReplaysIntoTheSameState) {
  testing::TempDir tmp;
  const std::string dir = tmp.Sub("q");
  IoError error;
  {
    auto log = SegmentedLog::Open(
        dir, {}, [](uint64_t, uint8_t, std::string_view) {}, nullptr, &error);
    ASSERT_NE(log, nullptr);
    for (uint64_t id = 1; id <= 1000; ++id) {
      log->Append(Type(QueueRecord::kPut), EncodePut(id, std::string(100, 'x')), &error);
    }
    std::vector<uint64_t> done;
    for (uint64_t id = 1; id <= 1000; id += 2) done.push_back(id);
    log->Append(Type(QueueRecord::kDone), EncodeIds(done), &error);
    ASSERT_TRUE(log->Sync(&error));
  }
  QueueReplay r;
  auto log = SegmentedLog::Open(
      dir, {}, [&](uint64_t p, uint8_t t, std::string_view b) { EXPECT_TRUE(r.Apply(p, t, b)); },
      nullptr, &error);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(r.live().size(), 500u);
  EXPECT_EQ(r.live().begin()->first, 2u);
  EXPECT_EQ(r.next_id(), 1001u);
}

}  // namespace
}  // namespace basin::storage

namespace basin::storage {
namespace {

TEST(QueueDefinitionTest, RoundTripsAndRefusesWhatItCannotRead) {
  core::QueueConfig c;
  c.name = "orders.eu-1";
  c.max_size = 10'000;
  c.visibility_timeout = std::chrono::seconds(45);
  c.max_deliveries = 5;
  c.dead_letter_queue = "orders.dead";
  c.max_bytes = 1 << 20;
  c.durable = true;
  c.retry_backoff = {std::chrono::seconds(1), std::chrono::milliseconds(1500)};
  c.max_priority = 7;
  c.message_ttl = std::chrono::hours(2);
  const std::string encoded = EncodeDefinition(c);
  EXPECT_EQ(DecodeDefinition(encoded), c);
  EXPECT_FALSE(DecodeDefinition("").has_value());
  EXPECT_FALSE(DecodeDefinition(encoded.substr(0, encoded.size() - 1)).has_value());
  std::string future = encoded;
  future[0] = 4;  // a version this broker does not know
  EXPECT_FALSE(DecodeDefinition(future).has_value());
}

// Version 2 (before options) still reads; an option this broker does not
// know fails the decode rather than be ignored.
TEST(QueueDefinitionTest, VersionTwoReadsAndAnUnknownOptionIsRefused) {
  core::QueueConfig c;
  c.name = "q";
  c.durable = true;
  std::string encoded = EncodeDefinition(c);
  ASSERT_EQ(encoded.back(), '\0');  // no options
  EXPECT_TRUE(IsCurrentDefinition(encoded));
  std::string v2 = encoded.substr(0, encoded.size() - 1);
  v2[0] = 2;
  EXPECT_EQ(DecodeDefinition(v2), c);
  EXPECT_FALSE(IsCurrentDefinition(v2));
  std::string unknown = encoded.substr(0, encoded.size() - 1);
  unknown += std::string("\x01\x7f\x01\x00", 4);  // one option: tag 127, one byte
  EXPECT_FALSE(DecodeDefinition(unknown).has_value());
}

// Kept exactly: a re-create after a restart compares the restored config with
// the one asked for, so 1500 ns must not come back as 1 µs.
TEST(QueueDefinitionTest, ASubMicrosecondVisibilityTimeoutRoundTripsExactly) {
  core::QueueConfig c;
  c.name = "fast";
  c.visibility_timeout = std::chrono::nanoseconds(1500);
  c.durable = true;
  EXPECT_EQ(DecodeDefinition(EncodeDefinition(c)), c);
}

// What a broker before the nanosecond change wrote (version 1, microseconds)
// still reads.
TEST(QueueDefinitionTest, AVersionOneDefinitionStillReads) {
  std::string v1(1, '\x01');
  v1 += '\x05';
  v1 += "jobs.";                      // name
  v1 += '\x0a';                       // max_size 10
  v1 += std::string("\xc0\x84\x3d");  // 1'000'000 µs
  v1 += '\x03';                       // max_deliveries
  v1 += '\x00';                       // no dead-letter queue
  v1 += '\x00';                       // max_bytes
  const auto c = DecodeDefinition(v1);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->name, "jobs.");
  EXPECT_EQ(c->max_size, 10u);
  EXPECT_EQ(c->visibility_timeout, std::chrono::seconds(1));
  EXPECT_EQ(c->max_deliveries, 3u);
  EXPECT_TRUE(c->durable);
}

}  // namespace
}  // namespace basin::storage
