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

// What turns the core's steady-clock times into the log's wall-clock ones
// (wall = steady + offset), read when a record needs it.
core::Duration WallOffset() {
  return std::chrono::duration_cast<core::Duration>(
      std::chrono::system_clock::now().time_since_epoch() - core::Clock::now().time_since_epoch());
}

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

void LogJournal::Restored(const QueueReplay& replay, uint64_t log_end,
                          const std::vector<core::MessagePtr>& messages) {
  std::lock_guard lock(mu_);
  closed_ = replay.closed();
  bindings_ = replay.bindings();
  last_put_position_ = log_end;
  next_id_ = replay.next_id();
  // In log order: a carried message's put lies after puts of higher ids.
  std::vector<std::pair<uint64_t, uint64_t>> by_position;  // (position, id)
  by_position.reserve(replay.live().size());
  for (const auto& [id, live] : replay.live()) by_position.emplace_back(live.position, id);
  std::sort(by_position.begin(), by_position.end());
  uint64_t highest = 0;
  for (const auto& [position, id] : by_position) {
    auto chunk = TailChunk(position);
    if (id < highest) {
      moved_[id] = chunk->first;
    } else {
      if (first_ids_.empty() || first_ids_.rbegin()->second != chunk->first) {
        first_ids_.emplace(id, chunk->first);
      }
      highest = id;
    }
    ++chunk->second.live;
  }
  for (const core::MessagePtr& m : messages) {
    if (m->ready_at() == core::TimePoint{}) continue;
    if (auto chunk = ChunkOf(m->id()); chunk != chunks_.end()) {
      chunk->second.delayed.emplace(m->id(), m->ready_at());
      delayed_count_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  dropped_before_ = chunks_.empty() ? 0 : chunks_.begin()->first;
}

std::map<uint64_t, LogJournal::Chunk>::iterator LogJournal::TailChunk(uint64_t position) {
  if (chunks_.empty() || position - chunks_.rbegin()->first >= kChunkBytes) {
    return chunks_.emplace(position, Chunk{}).first;
  }
  return std::prev(chunks_.end());
}

std::map<uint64_t, LogJournal::Chunk>::iterator LogJournal::ChunkOf(uint64_t id) {
  if (auto moved = moved_.find(id); moved != moved_.end()) return chunks_.find(moved->second);
  auto first = first_ids_.upper_bound(id);
  if (first == first_ids_.begin()) return chunks_.end();  // its chunk was already dropped
  return chunks_.find(std::prev(first)->second);
}

void LogJournal::Written(uint64_t first_id, uint64_t count, uint64_t position,
                         const Delayed& delayed) {
  std::lock_guard lock(mu_);
  last_put_position_ = position;
  next_id_ = std::max(next_id_, first_id + count);
  auto chunk = TailChunk(position);
  if (first_ids_.empty() || first_ids_.rbegin()->second != chunk->first) {
    first_ids_.emplace(first_id, chunk->first);
  }
  chunk->second.live += count;
  for (const auto& [id, at] : delayed) chunk->second.delayed.emplace(id, at);
  delayed_count_.fetch_add(delayed.size(), std::memory_order_relaxed);
}

void LogJournal::Put(const std::vector<const core::Message*>& messages, const core::PutKeys& keys,
                     Committed committed) {
  if (messages.empty()) return;
  std::vector<CommittedLog::Pending> records;
  records.reserve(messages.size() + 2);
  std::optional<core::Duration> wall_offset;  // read once a batch, and only if needed
  Delayed delayed;
  for (const core::Message* m : messages) {
    if (!m->has_attrs()) {
      records.push_back({Type(QueueRecord::kPut), EncodePut(*m)});
      continue;
    }
    if (!wall_offset) {
      wall_offset = WallOffset();
      UpgradeDefinition(records);
    }
    records.push_back({Type(QueueRecord::kPutAttrs), EncodePutAttrs(*m, *wall_offset)});
    if (m->ready_at() != core::TimePoint{}) delayed.emplace_back(m->id(), m->ready_at());
  }
  if (!keys.dedup_ids.empty() || !keys.sequences.empty()) {
    records.push_back({Type(QueueRecord::kPutKeys), EncodePutKeys(keys)});
  }
  // Written before the queue hears of it: the messages cannot be done (and
  // counted out of their chunk) until the queue makes them ready.
  log_->Append(std::move(records),
               [weak = weak_from_this(), first = messages.front()->id(), count = messages.size(),
                delayed = std::move(delayed),
                done = Adapt(std::move(committed))](const IoError* error, uint64_t position) {
                 auto self = weak.lock();
                 if (self != nullptr && error == nullptr) {
                   self->Written(first, count, position, delayed);
                 }
                 if (done) done(error, position);
               });
}

std::vector<std::pair<core::TimePoint, uint64_t>> LogJournal::TakeCarry() {
  if (!carry_asked_.load(std::memory_order_acquire)) return {};
  std::lock_guard lock(mu_);
  carry_asked_.store(false, std::memory_order_relaxed);
  return std::exchange(carry_, {});
}

void LogJournal::Retried(const std::vector<Retry>& retries) {
  const core::Duration wall_offset = WallOffset();
  std::vector<CommittedLog::Pending> records;
  records.reserve(retries.size() + 1);
  UpgradeDefinition(records);  // an older broker must refuse the log, not skip these
  for (const Retry& r : retries) {
    records.push_back({Type(QueueRecord::kRetry), EncodeRetry(r, wall_offset)});
  }
  log_->Append(std::move(records), nullptr);
  // A retry waiting days must not pin the log either: it may be carried.
  std::lock_guard lock(mu_);
  for (const Retry& r : retries) {
    auto chunk = ChunkOf(r.id);
    if (chunk != chunks_.end() && chunk->second.delayed.insert_or_assign(r.id, r.at).second) {
      delayed_count_.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

void LogJournal::Carry(
    const std::vector<std::pair<const core::Message*, core::TimePoint>>& messages) {
  if (messages.empty()) return;
  const core::Duration wall_offset = WallOffset();
  std::vector<CommittedLog::Pending> records;
  records.reserve(messages.size() + 1);
  UpgradeDefinition(records);
  Delayed carried;
  {
    std::lock_guard lock(mu_);
    for (const auto& [m, at] : messages) {
      records.push_back(
          {Type(QueueRecord::kPutAttrs), EncodePutAttrs(*m, wall_offset, at, m->delivery_count())});
      carried.emplace_back(m->id(), at);
      carrying_.insert(m->id());
    }
  }
  // Not waited for: until it is written the old records stay, and the chunk
  // that holds them.
  log_->Append(std::move(records), [weak = weak_from_this(), carried = std::move(carried)](
                                       const IoError* error, uint64_t position) {
    auto self = weak.lock();
    if (self == nullptr) return;
    if (error != nullptr) {
      std::lock_guard lock(self->mu_);
      for (const auto& [id, at] : carried) self->carrying_.erase(id);
      return;
    }
    self->Carried(carried, position);
  });
}

void LogJournal::Carried(const Delayed& carried, uint64_t position) {
  std::lock_guard lock(mu_);
  last_put_position_ = std::max(last_put_position_, position);
  // A chunk of their own that starts where they were written: joining the
  // tail chunk would keep up to kChunkBytes of log before them.
  auto to = chunks_.emplace(position, Chunk{}).first;
  for (const auto& [id, at] : carried) {
    // Done meanwhile: nothing to move.
    if (carrying_.erase(id) == 0) continue;
    auto from = ChunkOf(id);
    if (from == chunks_.end()) continue;
    --from->second.live;
    moved_[id] = to->first;
    ++to->second.live;
    if (to->second.delayed.emplace(id, at).second) {
      delayed_count_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  MaybeCompact();
}

void LogJournal::Delivered(const std::vector<uint64_t>& ids) {
  log_->Append({{Type(QueueRecord::kDelivered), EncodeIds(ids)}}, nullptr);
  // Handed out: no longer a delayed message a carry may move.
  if (delayed_count_.load(std::memory_order_relaxed) == 0) return;
  std::lock_guard lock(mu_);
  for (uint64_t id : ids) {
    auto chunk = ChunkOf(id);
    if (chunk != chunks_.end() && chunk->second.delayed.erase(id) != 0) {
      delayed_count_.fetch_sub(1, std::memory_order_relaxed);
    }
  }
}

void LogJournal::Done(const std::vector<uint64_t>& ids) {
  log_->Append({{Type(QueueRecord::kDone), EncodeIds(ids)}}, nullptr);
  std::lock_guard lock(mu_);
  for (uint64_t id : ids) {
    carrying_.erase(id);
    auto chunk = ChunkOf(id);
    moved_.erase(id);
    if (chunk == chunks_.end()) continue;
    if (chunk->second.live > 0) --chunk->second.live;
    if (chunk->second.delayed.erase(id) != 0) {
      delayed_count_.fetch_sub(1, std::memory_order_relaxed);
    }
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
  while (!chunks_.empty() && chunks_.begin()->second.live == 0) {
    // Nothing live: a delayed entry left is stale (a retry recorded after
    // its message was done).
    delayed_count_.fetch_sub(chunks_.begin()->second.delayed.size(), std::memory_order_relaxed);
    chunks_.erase(chunks_.begin());
  }
  // First ids of chunks that are gone: the ids they cover are all done.
  while (!first_ids_.empty() &&
         (chunks_.empty() || first_ids_.begin()->second < chunks_.begin()->first)) {
    first_ids_.erase(first_ids_.begin());
  }
  const uint64_t oldest = chunks_.empty() ? last_put_position_ : chunks_.begin()->first;
  if (oldest < dropped_before_ + compact_every_) return MaybeCarry();
  dropped_before_ = oldest;
  std::vector<CommittedLog::Pending> rewrite{{Type(QueueRecord::kDefined), definition_}};
  if (closed_) rewrite.push_back({Type(QueueRecord::kClosed), ""});
  for (const std::string& pattern : bindings_)
    rewrite.push_back({Type(QueueRecord::kBound), pattern});
  rewrite.push_back({Type(QueueRecord::kNextId), EncodeNextId(next_id_)});
  log_->Compact(std::move(rewrite), oldest);
}

void LogJournal::MaybeCarry() {
  // One carry at a time, of a chunk that holds nothing but delayed messages
  // with a segment's worth of log after it (their new records start a chunk
  // of their own: see Carried).
  if (carry_asked_.load(std::memory_order_relaxed) || !carrying_.empty() || chunks_.empty()) {
    return;
  }
  Chunk& oldest = chunks_.begin()->second;
  if (oldest.live == 0 || oldest.live != oldest.delayed.size() ||
      last_put_position_ - chunks_.begin()->first < compact_every_) {
    return;
  }
  // At most kMaxCarry a round (the records are built under the queue's
  // lock); once they are written the chunk qualifies again for the next.
  // Either carried (and delayed again where it lands) or no longer delayed:
  // a message the queue skips must not be asked for again.
  auto it = oldest.delayed.begin();
  for (size_t n = 0; n < kMaxCarry && it != oldest.delayed.end(); ++n) {
    carry_.emplace_back(it->second, it->first);
    it = oldest.delayed.erase(it);
  }
  delayed_count_.fetch_sub(carry_.size(), std::memory_order_relaxed);
  carry_asked_.store(true, std::memory_order_release);
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
