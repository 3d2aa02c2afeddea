#include "broker/logging.h"

#include <spdlog/details/file_helper.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <iostream>
#include <memory>
#include <mutex>

namespace basin {
namespace {

// --log-file: a file sink whose file can be swapped under the sink's own
// mutex. The logger itself is made once and never replaced: spdlog's default
// logger must not be swapped while other threads log through it.
class ReopenableFileSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit ReopenableFileSink(std::unique_ptr<spdlog::details::file_helper> file)
      : file_(std::move(file)) {}

  // Opens the path afresh (after logrotate moved the old file away); on
  // failure the old file stays in use.
  void Reopen(const std::string& path) {
    auto fresh = Open(path);  // before the lock: a slow open holds no logger up
    std::lock_guard lock(mutex_);
    file_->flush();
    file_ = std::move(fresh);
  }

  static std::unique_ptr<spdlog::details::file_helper> Open(const std::string& path) {
    auto file = std::make_unique<spdlog::details::file_helper>();
    file->open(path);  // appends; throws spdlog_ex
    return file;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    file_->write(formatted);
  }
  void flush_() override { file_->flush(); }

 private:
  std::unique_ptr<spdlog::details::file_helper> file_;
};

// Set once by SetupLogging, before any thread starts.
std::shared_ptr<ReopenableFileSink> file_sink;
std::string file_path;

}  // namespace

bool SetupLogging(const std::string& level, const std::string& format, const std::string& file) {
  const auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") {
    std::cerr << "basind: invalid value '" << level << "' for --log-level\n";
    return false;
  }
  spdlog::sink_ptr sink;
  if (file.empty()) {
    sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  } else {
    try {
      file_sink = std::make_shared<ReopenableFileSink>(ReopenableFileSink::Open(file));
    } catch (const spdlog::spdlog_ex& e) {
      std::cerr << "basind: cannot open --log-file " << file << ": " << e.what() << "\n";
      return false;
    }
    file_path = file;
    sink = file_sink;
  }
  auto logger = std::make_shared<spdlog::logger>("basind", std::move(sink));
  if (format == "json") {
    // Messages are the broker's own (queue names are restricted to
    // [A-Za-z0-9._-]), so they need no JSON escaping.
    logger->set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","msg":"%v"})",
                        spdlog::pattern_time_type::utc);
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  }
  logger->set_level(lvl);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
  return true;
}

bool ReopenLogFile() {
  if (file_sink == nullptr) return true;
  try {
    file_sink->Reopen(file_path);
  } catch (const spdlog::spdlog_ex& e) {
    spdlog::error("SIGHUP: cannot reopen --log-file {}: {}; logging to the old file", file_path,
                  e.what());
    return false;
  }
  spdlog::info("SIGHUP: reopened {}", file_path);
  return true;
}

}  // namespace basin
