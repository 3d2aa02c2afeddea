// A durable queue's journal end to end below the queue: records written
// through LogJournal and the Committer replay into the same messages.
#include "broker/storage/log_journal.h"

#include <gtest/gtest.h>

#include <future>

#include "broker/storage/queue_definition.h"
#include "broker/storage/queue_records.h"
#include "storage_faults.h"
#include "temp_dir.h"

namespace basin::storage {
namespace {

using core::Message;

// Waits until everything appended to `log` so far is written.
void Settle(CommittedLog& log) {
  std::promise<void> flushed;
  log.Append({}, [&](const IoError*, uint64_t) { flushed.set_value(); });
  flushed.get_future().wait();
}

// What a replay of the log in `dir` finds (every record must parse).
QueueReplay Replay(const std::string& dir, const LogOptions& options = {}) {
  QueueReplay replay;
  IoError io;
  auto log = SegmentedLog::Open(
      dir, options,
      [&](uint64_t p, uint8_t t, std::string_view b) { EXPECT_TRUE(replay.Apply(p, t, b)); },
      nullptr, &io);
  EXPECT_NE(log, nullptr) << io.message;
  return replay;
}

TEST(MessageEncodingTest, RoundTripsAndRefusesGarbage) {
  auto m = Message::Make(7, "payload", {{"k", "v"}, {"trace", "abc"}});
  std::string encoded;
  m->EncodeTo(encoded);
  auto back = Message::Decode(7, 2, encoded);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back.value()->id(), 7u);
  EXPECT_EQ(back.value()->delivery_count(), 2u);
  EXPECT_EQ(back.value()->payload(), "payload");
  EXPECT_EQ(back.value()->headers(), m->headers());
  EXPECT_EQ(back.value()->bytes(), m->bytes());
  EXPECT_FALSE(Message::Decode(1, 0, "").ok());
  EXPECT_FALSE(Message::Decode(1, 0, std::string("\xff\x00\x00\x00", 4)).ok());
  // Headers length fits, but a header string inside claims more than there is.
  std::string lying = encoded;
  lying[4] = '\x7f';
  EXPECT_FALSE(Message::Decode(1, 0, lying).ok());
}

TEST(LogJournalTest, WhatIsJournaledReplaysIntoTheSameMessages) {
  testing::TempDir tmp;
  const std::string dir = tmp.Sub("q");
  IoError io;
  {
    Committer committer(FsyncPolicy::kBatch, std::chrono::milliseconds(1));
    auto log = SegmentedLog::Open(
        dir, {}, [](uint64_t, uint8_t, std::string_view) {}, nullptr, &io);
    ASSERT_NE(log, nullptr);
    auto committed_log = committer.Adopt(std::move(log));
    // The definition is written by whoever creates the log (QueueStore).
    committed_log->Append({{static_cast<uint8_t>(QueueRecord::kDefined), "definition"}}, nullptr);
    auto owned =
        std::make_shared<LogJournal>(committed_log, "definition", LogOptions{}.max_segment_bytes);
    LogJournal& journal = *owned;
    std::vector<core::MessagePtr> msgs;
    for (uint64_t id = 1; id <= 4; ++id) {
      msgs.push_back(Message::Make(id, "m" + std::to_string(id), {{"n", std::to_string(id)}}));
    }
    std::promise<std::optional<core::Error>> committed;
    core::PutKeys keys;
    keys.dedup_ids = {{"d-1", 1}};
    keys.producer = "p";
    keys.sequences = {{10, 1}, {11, 2}};
    journal.Put(
        {msgs[0].get(), msgs[1].get(), msgs[2].get(), msgs[3].get()}, keys,
        [&](std::optional<core::Error> e, core::TimePoint) { committed.set_value(std::move(e)); });
    journal.Binding("orders.*", true);
    journal.Binding("gone", true);
    journal.Binding("gone", false);
    EXPECT_FALSE(committed.get_future().get().has_value());
    journal.Delivered({1, 2});
    journal.Done({1});
    std::promise<void> closed;
    journal.Closed([&](std::optional<core::Error>, core::TimePoint) { closed.set_value(); });
    closed.get_future().wait();
  }
  QueueReplay replay;
  auto log = SegmentedLog::Open(
      dir, {},
      [&](uint64_t p, uint8_t t, std::string_view b) { EXPECT_TRUE(replay.Apply(p, t, b)); },
      nullptr, &io);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(replay.definition(), "definition");
  EXPECT_TRUE(replay.closed());
  EXPECT_EQ(replay.bindings(), (std::set<std::string>{"orders.*"}));
  ASSERT_EQ(replay.keys().size(), 1u);
  EXPECT_EQ(replay.keys()[0].dedup_ids,
            (std::vector<std::pair<std::string, uint64_t>>{{"d-1", 1}}));
  EXPECT_EQ(replay.keys()[0].producer, "p");
  EXPECT_EQ(replay.keys()[0].sequences,
            (std::vector<std::pair<uint64_t, uint64_t>>{{10, 1}, {11, 2}}));
  ASSERT_EQ(replay.live().size(), 3u);
  const auto& [id, live] = *replay.live().begin();
  auto m = Message::Decode(id, live.deliveries, live.message);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m.value()->id(), 2u);
  EXPECT_EQ(m.value()->delivery_count(), 1u);
  EXPECT_EQ(m.value()->payload(), "m2");
  EXPECT_EQ(m.value()->headers(), (core::Headers{{"n", "2"}}));
}

// A queue whose log has a version 2 definition gets the current one written
// before its first put with attributes, so an older broker refuses the log
// instead of skipping records it cannot read; plain puts leave it alone.
TEST(LogJournalTest, TheDefinitionIsUpgradedBeforeTheFirstPutWithAttributes) {
  testing::TempDir tmp;
  const std::string dir = tmp.Sub("q");
  core::QueueConfig config;
  config.name = "q";
  config.durable = true;
  std::string v2 = EncodeDefinition(config);
  v2.pop_back();  // no options
  v2[0] = 2;
  IoError io;
  const auto put = [](LogJournal& journal, const Message& m) {
    std::promise<void> written;
    journal.Put({&m}, {},
                [&](std::optional<core::Error>, core::TimePoint) { written.set_value(); });
    written.get_future().wait();
  };
  const auto definition = [&] {
    QueueReplay replay;
    auto log = SegmentedLog::Open(
        dir, {}, [&](uint64_t p, uint8_t t, std::string_view b) { replay.Apply(p, t, b); }, nullptr,
        &io);
    EXPECT_NE(log, nullptr);
    return replay.definition().value_or("");
  };
  Committer committer(FsyncPolicy::kBatch, std::chrono::milliseconds(1));
  {
    auto log = SegmentedLog::Open(
        dir, {}, [](uint64_t, uint8_t, std::string_view) {}, nullptr, &io);
    auto committed = committer.Adopt(std::move(log));
    committed->Append({{static_cast<uint8_t>(QueueRecord::kDefined), v2}}, nullptr);
    auto journal = std::make_shared<LogJournal>(committed, v2, LogOptions{}.max_segment_bytes);
    put(*journal, *Message::Make(1, "plain", {}));
    committed->Close();
  }
  EXPECT_EQ(definition(), v2);
  {
    auto log = SegmentedLog::Open(
        dir, {}, [](uint64_t, uint8_t, std::string_view) {}, nullptr, &io);
    auto committed = committer.Adopt(std::move(log));
    auto journal = std::make_shared<LogJournal>(committed, v2, LogOptions{}.max_segment_bytes);
    core::MessageAttrs attrs;
    attrs.priority = 1;
    put(*journal, *Message::Make(2, "with attributes", {}, attrs));
    committed->Close();
  }
  EXPECT_TRUE(IsCurrentDefinition(definition()));
  EXPECT_EQ(DecodeDefinition(definition()), config);
}

// A retry record is one an older broker cannot read too: it also brings the
// definition to the current version first.
TEST(LogJournalTest, TheDefinitionIsUpgradedBeforeTheFirstRetry) {
  testing::TempDir tmp;
  const std::string dir = tmp.Sub("q");
  core::QueueConfig config;
  config.name = "q";
  config.durable = true;
  std::string v2 = EncodeDefinition(config);
  v2.pop_back();
  v2[0] = 2;
  IoError io;
  Committer committer(FsyncPolicy::kBatch, std::chrono::milliseconds(1));
  {
    auto log = SegmentedLog::Open(
        dir, {}, [](uint64_t, uint8_t, std::string_view) {}, nullptr, &io);
    auto committed = committer.Adopt(std::move(log));
    committed->Append({{static_cast<uint8_t>(QueueRecord::kDefined), v2}}, nullptr);
    auto journal = std::make_shared<LogJournal>(committed, v2, LogOptions{}.max_segment_bytes);
    journal->Retried({{1, 1, core::Clock::now() + std::chrono::hours(1)}});
    Settle(*committed);
    committed->Close();
  }
  // The retry names a message the log does not hold: replayed, it is skipped.
  EXPECT_TRUE(IsCurrentDefinition(Replay(dir).definition().value_or("")));
}

// A delayed message does not pin the log until its time: once it is all its
// chunk holds, the journal asks for it to be written again at the tail
// (what the queue does, done here by hand), and the old segments go. After
// a restart it is found by its new record, and done it lets go of the log.
TEST(LogJournalTest, ADelayedMessageIsCarriedForwardAndDoesNotPinTheLog) {
  testing::TempDir tmp;
  const std::string dir = tmp.Sub("q");
  const LogOptions small{64 << 10};
  const std::string payload(1000, 'x');
  IoError io;
  uint64_t next_id = 1;
  core::MessageAttrs later;
  later.ready_at = core::Clock::now() + std::chrono::hours(1);
  auto delayed = Message::Make(next_id++, "delayed", {}, later);
  const auto put = [&](LogJournal& journal, const Message& m) {
    std::promise<void> written;
    journal.Put({&m}, {}, [&](std::optional<core::Error> e, core::TimePoint) {
      EXPECT_FALSE(e.has_value());
      written.set_value();
    });
    written.get_future().wait();
  };
  int carries = 0;
  Committer committer(FsyncPolicy::kNever, std::chrono::milliseconds(1));
  {
    auto log = SegmentedLog::Open(
        dir, small, [](uint64_t, uint8_t, std::string_view) {}, nullptr, &io);
    ASSERT_NE(log, nullptr);
    auto committed = committer.Adopt(std::move(log));
    auto journal = std::make_shared<LogJournal>(committed, "definition", small.max_segment_bytes);
    committed->Append({{static_cast<uint8_t>(QueueRecord::kDefined), "definition"}}, nullptr);
    put(*journal, *delayed);
    // 2 MiB of traffic that is done at once: 32 segments' worth.
    for (int i = 0; i < 2000; ++i) {
      auto m = Message::Make(next_id++, payload, {});
      put(*journal, *m);
      journal->Done({m->id()});
      for (const auto& [at, id] : journal->TakeCarry()) {
        EXPECT_EQ(id, delayed->id());
        EXPECT_EQ(at, delayed->ready_at());
        journal->Carry({{delayed.get(), delayed->ready_at()}});
        ++carries;
      }
    }
    Settle(*committed);
    EXPECT_GE(carries, 1);
    EXPECT_LE(committed->segments(), 4u);
    committed->Close();
  }
  std::vector<core::MessagePtr> recovered;
  QueueReplay replay;
  uint64_t end = 0;
  {
    auto log = SegmentedLog::Open(
        dir, small,
        [&](uint64_t p, uint8_t t, std::string_view b) { EXPECT_TRUE(replay.Apply(p, t, b)); },
        nullptr, &io);
    ASSERT_NE(log, nullptr);
    end = log->end();
    ASSERT_EQ(replay.live().size(), 1u);
    const QueueReplay::Live& live = replay.live().at(delayed->id());
    EXPECT_NE(live.attrs.ready_at, 0);
    auto m = Message::Decode(delayed->id(), 0, live.message, delayed->attrs());
    ASSERT_TRUE(m.ok());
    EXPECT_EQ(m.value()->payload(), "delayed");
    recovered.push_back(std::move(m.value()));
    auto committed = committer.Adopt(std::move(log));
    auto journal = std::make_shared<LogJournal>(committed, "definition", small.max_segment_bytes);
    journal->Restored(replay, end, recovered);
    // Still carried after the restart, and done it pins nothing.
    for (int i = 0; i < 1000; ++i) {
      auto plain = Message::Make(next_id++, payload, {});
      put(*journal, *plain);
      journal->Done({plain->id()});
      for (const auto& [at, id] : journal->TakeCarry()) {
        EXPECT_EQ(id, delayed->id());
        journal->Carry({{recovered.front().get(), recovered.front()->ready_at()}});
      }
    }
    Settle(*committed);
    EXPECT_LE(committed->segments(), 4u);
    journal->Done({delayed->id()});
    for (int i = 0; i < 200; ++i) {
      auto plain = Message::Make(next_id++, payload, {});
      put(*journal, *plain);
      journal->Done({plain->id()});
    }
    Settle(*committed);
    EXPECT_LE(committed->segments(), 3u);
    committed->Close();
  }
  EXPECT_TRUE(Replay(dir, small).live().empty());
}

// A carry the queue asked for can race the message's end: a done written
// before the carry's record lands leaves nothing live, in the journal's
// books or in a replay.
TEST(LogJournalTest, ADoneThatRacesACarryLeavesNothingLive) {
  testing::TempDir tmp;
  const std::string dir = tmp.Sub("q");
  const LogOptions small{64 << 10};
  IoError io;
  core::MessageAttrs later;
  later.ready_at = core::Clock::now() + std::chrono::hours(1);
  auto delayed = Message::Make(1, "delayed", {}, later);
  Committer committer(FsyncPolicy::kNever, std::chrono::milliseconds(1));
  {
    auto log = SegmentedLog::Open(
        dir, small, [](uint64_t, uint8_t, std::string_view) {}, nullptr, &io);
    auto committed = committer.Adopt(std::move(log));
    auto journal = std::make_shared<LogJournal>(committed, "definition", small.max_segment_bytes);
    committed->Append({{static_cast<uint8_t>(QueueRecord::kDefined), "definition"}}, nullptr);
    std::promise<void> written;
    journal->Put({delayed.get()}, {},
                 [&](std::optional<core::Error>, core::TimePoint) { written.set_value(); });
    written.get_future().wait();
    journal->Carry({{delayed.get(), delayed->ready_at()}});
    journal->Done({delayed->id()});  // may come before the carry is written
    Settle(*committed);
    EXPECT_TRUE(journal->TakeCarry().empty());
    committed->Close();
  }
  EXPECT_TRUE(Replay(dir, small).live().empty());
}

// Disk use follows what is live: once the messages of old segments are done,
// those segments go, and what they held that is still true (the definition,
// the closed mark) is found again in the replay.
TEST(LogJournalTest, CompactionDropsSegmentsWhoseMessagesAreDone) {
  testing::TempDir tmp;
  const std::string dir = tmp.Sub("q");
  const LogOptions small{64 << 10};
  const std::string payload(1000, 'x');
  IoError io;
  uint64_t next_id = 1;
  auto put = [&](LogJournal& journal) {
    auto m = Message::Make(next_id++, payload, {});
    std::promise<void> written;
    journal.Put({m.get()}, {}, [&](std::optional<core::Error> e, core::TimePoint) {
      EXPECT_FALSE(e.has_value());
      written.set_value();
    });
    written.get_future().wait();
    return m->id();
  };
  size_t segments_after = 0;
  uint64_t kept = 0;
  {
    Committer committer(FsyncPolicy::kNever, std::chrono::milliseconds(1));
    auto log = SegmentedLog::Open(
        dir, small, [](uint64_t, uint8_t, std::string_view) {}, nullptr, &io);
    ASSERT_NE(log, nullptr);
    auto committed = committer.Adopt(std::move(log));
    auto journal = std::make_shared<LogJournal>(committed, "definition", small.max_segment_bytes);
    committed->Append({{static_cast<uint8_t>(QueueRecord::kDefined), "definition"}}, nullptr);
    auto settle = [&] {
      std::promise<void> flushed;
      committed->Append({}, [&](const IoError*, uint64_t) { flushed.set_value(); });
      flushed.get_future().wait();
    };
    // 1 MiB through a queue whose consumer keeps up (16 segments' worth), then
    // a message that stays, then another megabyte.
    for (int i = 0; i < 1000; ++i) journal->Done({put(*journal)});
    kept = put(*journal);
    for (int i = 0; i < 1000; ++i) journal->Done({put(*journal)});
    journal->Closed(nullptr);
    settle();
    // What lies before the kept message is gone; what follows it stays until
    // it is done (a message that waits pins the log after it: see
    // docs/design.md, "Durability").
    EXPECT_LE(committed->segments(), 20u);
    EXPECT_GE(committed->segments(), 14u);
    journal->Done({kept});
    journal->Done({put(*journal)});
    settle();
    segments_after = committed->segments();
    EXPECT_LE(segments_after, 3u);
  }
  QueueReplay replay;
  auto log = SegmentedLog::Open(
      dir, small,
      [&](uint64_t p, uint8_t t, std::string_view b) { EXPECT_TRUE(replay.Apply(p, t, b)); },
      nullptr, &io);
  ASSERT_NE(log, nullptr);
  EXPECT_LE(log->segments(), segments_after);
  EXPECT_EQ(replay.definition(), "definition");
  EXPECT_TRUE(replay.closed());
  EXPECT_TRUE(replay.live().empty());
  // Ids are not reused after a restart even when every put was compacted
  // away: a stale task_done in the tail must not end a new message.
  EXPECT_EQ(replay.next_id(), next_id);
}

// Compaction deletes the segments that hold the queue's definition, so the
// rewrite must be durable first: a power cut right after a compaction finds
// the definition and the next id. Under fsync=never nothing else is ever
// synced, so only that order can keep them.
TEST(LogJournalTest, APowerCutJustAfterACompactionKeepsTheDefinition) {
  testing::TempDir tmp;
  const std::string dir = tmp.Sub("q");
  testing::StorageFaults faults;
  const LogOptions options{.max_segment_bytes = 64 << 10, .faults = faults.Hook()};
  const std::string first_segment = dir + "/00000000000000000000.log";
  uint64_t next_id = 1;
  {
    IoError io;
    auto log = SegmentedLog::Open(
        dir, options, [](uint64_t, uint8_t, std::string_view) {}, nullptr, &io);
    ASSERT_NE(log, nullptr);
    // As QueueStore::Create does: the definition is synced before the queue
    // takes a put.
    ASSERT_TRUE(log->Append(static_cast<uint8_t>(QueueRecord::kDefined), "definition", &io));
    ASSERT_TRUE(log->Sync(&io)) << io.message;
    Committer committer(FsyncPolicy::kNever, std::chrono::milliseconds(1));
    auto committed = committer.Adopt(std::move(log));
    auto journal = std::make_shared<LogJournal>(committed, "definition", options.max_segment_bytes);
    // Puts and task_dones until the first compaction drops the first segment.
    while (std::filesystem::exists(first_segment) && next_id < 1000) {
      auto m = Message::Make(next_id++, std::string(1000, 'x'), {});
      std::promise<void> written;
      journal->Put({m.get()}, {},
                   [&](std::optional<core::Error>, core::TimePoint) { written.set_value(); });
      written.get_future().wait();
      journal->Done({m->id()});
      std::promise<void> settled;
      committed->Append({}, [&](const IoError*, uint64_t) { settled.set_value(); });
      settled.get_future().wait();
    }
    ASSERT_FALSE(std::filesystem::exists(first_segment)) << "no compaction happened";
  }
  faults.PowerCut(dir);
  QueueReplay replay;
  IoError io;
  auto log = SegmentedLog::Open(
      dir, {}, [&](uint64_t p, uint8_t t, std::string_view b) { replay.Apply(p, t, b); }, nullptr,
      &io);
  ASSERT_NE(log, nullptr) << io.message;
  EXPECT_EQ(replay.definition(), "definition");
  EXPECT_EQ(replay.next_id(), next_id);
  EXPECT_TRUE(replay.live().empty());
}

}  // namespace
}  // namespace basin::storage
