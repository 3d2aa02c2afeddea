#include "broker/core/pending_puts.h"

namespace basin::core {

uint64_t PendingPuts::Admit(PendingBatch batch) {
  batch.seq = next_seq_++;
  count_ += batch.msgs.size();
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
    count_ -= batches_.front().msgs.size();
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
  count_ = 0;
  bytes_ = 0;
  return out;
}

}  // namespace basin::core
