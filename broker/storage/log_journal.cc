#include "broker/storage/log_journal.h"

#include <algorithm>
#include <chrono>

#include "broker/storage/queue_definition.h"

namespace basin::storage {
namespace {

// Puts within this much log of a chunk's first put join that chunk: fine
// enough for 64 MiB segments, coarse enough to cost a map node per megabyte
// rather than per message.
constexpr uint64_t kChunkBytes = 1 << 20;

uint8_t Type(QueueRecord r) { return static_cast<uint8_t>(r); }

}  // namespace

core::Error StorageUnavailable(const std::string& what) {
  return core::Error{core::Errc::kStorageUnavailable, "storage: " + what};
}

LogJournal::LogJournal(std::shared_ptr<CommittedLog> log, std::string definition,
                       uint64_t compact_every)
    : log_(std::move(log)),
      definition_(std::move(definition)),
      definition_current_(IsCurrentDefinition(definition_)),
      compact_every_(compact_every) {}

DurableCallback LogJournal::Adapt(Committed committed) {
  if (!committed) return nullptr;
  return [committed = std::move(committed)](const IoError* error, uint64_t) {
    const core::TimePoint now = core::Clock::now();
    if (error == nullptr) return committed(std::nullopt, now);
    committed(StorageUnavailable(error->message), now);
  };
}

void LogJournal::Restored(const QueueReplay& replay, uint64_t log_end) {
  std::lock_guard lock(mu_);
  closed_ = replay.closed();
  bindings_ = replay.bindings();
  last_put_position_ = log_end;
  next_id_ = replay.next_id();
  for (const auto& [id, live] : replay.live()) {
    if (chunks_.empty() || live.position - chunks_.rbegin()->second.position >= kChunkBytes) {
      chunks_.emplace(id, Chunk{live.position, 0});
    }
    ++chunks_.rbegin()->second.live;
  }
  dropped_before_ = chunks_.empty() ? 0 : chunks_.begin()->second.position;
}

void LogJournal::Written(uint64_t first_id, uint64_t count, uint64_t position) {
  std::lock_guard lock(mu_);
  last_put_position_ = position;
  next_id_ = std::max(next_id_, first_id + count);
  if (chunks_.empty() || position - chunks_.rbegin()->second.position >= kChunkBytes) {
    chunks_.emplace(first_id, Chunk{position, 0});
  }
  chunks_.rbegin()->second.live += count;
}

void LogJournal::Put(const std::vector<const core::Message*>& messages, const core::PutKeys& keys,
                     Committed committed) {
  if (messages.empty()) return;
  std::vector<CommittedLog::Pending> records;
  records.reserve(messages.size() + 2);
  std::optional<core::Duration> wall_offset;  // read once a batch, and only if needed
  for (const core::Message* m : messages) {
    if (!m->has_attrs()) {
      records.push_back({Type(QueueRecord::kPut), EncodePut(*m)});
      continue;
    }
    if (!wall_offset) {
      wall_offset = std::chrono::duration_cast<core::Duration>(
          std::chrono::system_clock::now().time_since_epoch() -
          core::Clock::now().time_since_epoch());
      UpgradeDefinition(records);
    }
    records.push_back({Type(QueueRecord::kPutAttrs), EncodePutAttrs(*m, *wall_offset)});
  }
  if (!keys.dedup_ids.empty() || !keys.sequences.empty()) {
    records.push_back({Type(QueueRecord::kPutKeys), EncodePutKeys(keys)});
  }
  // Written before the queue hears of it: the messages cannot be done (and
  // counted out of their chunk) until the queue makes them ready.
  log_->Append(std::move(records),
               [weak = weak_from_this(), first = messages.front()->id(), count = messages.size(),
                done = Adapt(std::move(committed))](const IoError* error, uint64_t position) {
                 auto self = weak.lock();
                 if (self != nullptr && error == nullptr) self->Written(first, count, position);
                 if (done) done(error, position);
               });
}

void LogJournal::Delivered(const std::vector<uint64_t>& ids) {
  log_->Append({{Type(QueueRecord::kDelivered), EncodeIds(ids)}}, nullptr);
}

void LogJournal::Done(const std::vector<uint64_t>& ids) {
  log_->Append({{Type(QueueRecord::kDone), EncodeIds(ids)}}, nullptr);
  std::lock_guard lock(mu_);
  for (uint64_t id : ids) {
    auto it = chunks_.upper_bound(id);
    if (it == chunks_.begin()) continue;  // its chunk was already dropped
    --it;
    if (it->second.live > 0) --it->second.live;
  }
  MaybeCompact();
}

void LogJournal::UpgradeDefinition(std::vector<CommittedLog::Pending>& records) {
  std::lock_guard lock(mu_);
  if (definition_current_) return;
  if (auto config = DecodeDefinition(definition_)) definition_ = EncodeDefinition(*config);
  definition_current_ = true;
  records.push_back({Type(QueueRecord::kDefined), definition_});
}

void LogJournal::MaybeCompact() {
  while (!chunks_.empty() && chunks_.begin()->second.live == 0) chunks_.erase(chunks_.begin());
  const uint64_t oldest = chunks_.empty() ? last_put_position_ : chunks_.begin()->second.position;
  if (oldest < dropped_before_ + compact_every_) return;
  dropped_before_ = oldest;
  std::vector<CommittedLog::Pending> rewrite{{Type(QueueRecord::kDefined), definition_}};
  if (closed_) rewrite.push_back({Type(QueueRecord::kClosed), ""});
  for (const std::string& pattern : bindings_)
    rewrite.push_back({Type(QueueRecord::kBound), pattern});
  rewrite.push_back({Type(QueueRecord::kNextId), EncodeNextId(next_id_)});
  log_->Compact(std::move(rewrite), oldest);
}

void LogJournal::Deleted() { log_->Close(); }

void LogJournal::Binding(const std::string& pattern, bool bound) {
  {
    std::lock_guard lock(mu_);
    if (bound) {
      bindings_.insert(pattern);
    } else {
      bindings_.erase(pattern);
    }
  }
  log_->Append({{Type(bound ? QueueRecord::kBound : QueueRecord::kUnbound), pattern}}, nullptr);
}

void LogJournal::Closed(Committed committed) {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  log_->Append({{Type(QueueRecord::kClosed), ""}}, Adapt(std::move(committed)));
}

}  // namespace basin::storage
