#include "broker/storage/log_journal.h"

#include "broker/storage/queue_records.h"

namespace basin::storage {
namespace {

uint8_t Type(QueueRecord r) { return static_cast<uint8_t>(r); }

}  // namespace

DurableCallback LogJournal::Adapt(Committed committed) {
  if (!committed) return nullptr;
  return [committed = std::move(committed)](const IoError* error) {
    if (error == nullptr) return committed(std::nullopt);
    committed(core::Error{core::Errc::kStorageUnavailable, "storage: " + error->message});
  };
}

void LogJournal::Defined(std::string definition, Committed committed) {
  log_->Append({{Type(QueueRecord::kDefined), std::move(definition)}}, Adapt(std::move(committed)));
}

void LogJournal::Put(const std::vector<const core::Message*>& messages, Committed committed) {
  std::vector<CommittedLog::Pending> records;
  records.reserve(messages.size());
  for (const core::Message* m : messages) {
    records.push_back({Type(QueueRecord::kPut), EncodePut(m->id(), m->Encode())});
  }
  log_->Append(std::move(records), Adapt(std::move(committed)));
}

void LogJournal::Delivered(const std::vector<uint64_t>& ids) {
  log_->Append({{Type(QueueRecord::kDelivered), EncodeIds(ids)}}, nullptr);
}

void LogJournal::Done(const std::vector<uint64_t>& ids) {
  log_->Append({{Type(QueueRecord::kDone), EncodeIds(ids)}}, nullptr);
}

void LogJournal::Closed(Committed committed) {
  log_->Append({{Type(QueueRecord::kClosed), ""}}, Adapt(std::move(committed)));
}

}  // namespace basin::storage
