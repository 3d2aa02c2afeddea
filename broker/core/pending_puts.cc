#include "broker/core/pending_puts.h"

namespace basin::core {

uint64_t PendingPuts::Admit(PendingBatch batch) {
  batch.seq = next_seq_++;
  room_count_ += batch.room_count;
  room_bytes_ += batch.room_bytes;
  bytes_ += batch.bytes;
  batches_.push_back(std::move(batch));
  return batches_.back().seq;
}

std::vector<PendingBatch> PendingPuts::Resolve(uint64_t seq, std::optional<Error> error) {
  std::vector<PendingBatch> settled;
  // Numbers are consecutive, so the batch is found by arithmetic, not search.
  if (batches_.empty() || seq < batches_.front().seq || seq > batches_.back().seq) return settled;
  PendingBatch& batch = batches_[seq - batches_.front().seq];
  batch.resolved = true;
  batch.error = std::move(error);
  while (!batches_.empty() && batches_.front().resolved) {
    room_count_ -= batches_.front().room_count;
    room_bytes_ -= batches_.front().room_bytes;
    bytes_ -= batches_.front().bytes;
    settled.push_back(std::move(batches_.front()));
    batches_.pop_front();
  }
  return settled;
}

std::vector<PendingBatch> PendingPuts::TakeAll() {
  std::vector<PendingBatch> out(std::make_move_iterator(batches_.begin()),
                                std::make_move_iterator(batches_.end()));
  batches_.clear();
  room_count_ = 0;
  room_bytes_ = 0;
  bytes_ = 0;
  return out;
}

}  // namespace basin::core
