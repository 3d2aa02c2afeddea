// Disk faults and power cuts for storage tests, through the seam SegmentedLog
// keeps for them (LogOptions::faults): a full disk, a file-descriptor limit or
// a failed fdatasync cannot be caused on demand otherwise, and those are the
// paths that must tell exactly what was made durable.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <mutex>
#include <string>

#include "broker/storage/segmented_log.h"

namespace basin::testing {

class StorageFaults {
 public:
  // For LogOptions::faults. Thread-safe: the Committer's thread calls it.
  storage::FaultHook Hook() {
    return [this](storage::FileOp op, const std::string& path) { return Check(op, path); };
  }

  // From now on, `op` on a path containing `path_part` fails with `error`
  // (ENOSPC, EMFILE, EIO), after `let_through` such calls have succeeded.
  void Fail(storage::FileOp op, int error, std::string path_part = "", int let_through = 0) {
    std::lock_guard lock(mu_);
    rule_ = Rule{op, error, std::move(path_part), let_through, true};
  }
  void Clear() {
    std::lock_guard lock(mu_);
    rule_.active = false;
  }
  int failed() const {
    std::lock_guard lock(mu_);
    return failed_;
  }

  // A power cut: every file in `dir` keeps only what its last successful
  // fdatasync covered (nothing, if none did), as the page cache is lost.
  void PowerCut(const std::string& dir) const {
    std::lock_guard lock(mu_);
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      const auto it = synced_.find(e.path().string());
      std::filesystem::resize_file(e.path(), it == synced_.end() ? 0 : it->second);
    }
  }

 private:
  struct Rule {
    storage::FileOp op{};
    int error = 0;
    std::string path_part;
    int let_through = 0;
    bool active = false;
  };

  int Check(storage::FileOp op, const std::string& path) {
    std::lock_guard lock(mu_);
    if (rule_.active && rule_.op == op && path.find(rule_.path_part) != std::string::npos) {
      if (rule_.let_through == 0) {
        ++failed_;
        return rule_.error;
      }
      --rule_.let_through;
    }
    // Called just before the fdatasync, which will succeed: what the file
    // holds now is what survives a power cut.
    struct stat st {};
    if (op == storage::FileOp::kSync && ::stat(path.c_str(), &st) == 0) {
      synced_[path] = static_cast<uintmax_t>(st.st_size);
    }
    return 0;
  }

  mutable std::mutex mu_;
  Rule rule_;
  int failed_ = 0;
  std::map<std::string, uintmax_t> synced_;
};

}  // namespace basin::testing
