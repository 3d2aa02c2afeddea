#include "broker/logging.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <iostream>

namespace basin {
namespace {

struct Settings {
  spdlog::level::level_enum level = spdlog::level::info;
  std::string format;
  std::string file;
};
Settings settings;  // set once by SetupLogging, before any thread starts

std::shared_ptr<spdlog::logger> MakeLogger(std::string* error) {
  std::shared_ptr<spdlog::logger> logger;
  if (settings.file.empty()) {
    logger = std::make_shared<spdlog::logger>("basind",
                                              std::make_shared<spdlog::sinks::stderr_sink_mt>());
  } else {
    try {
      logger = std::make_shared<spdlog::logger>(
          "basind", std::make_shared<spdlog::sinks::basic_file_sink_mt>(settings.file));
    } catch (const spdlog::spdlog_ex& e) {
      *error = e.what();
      return nullptr;
    }
  }
  if (settings.format == "json") {
    // Messages are the broker's own (queue names are restricted to
    // [A-Za-z0-9._-]), so they need no JSON escaping.
    logger->set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","msg":"%v"})",
                        spdlog::pattern_time_type::utc);
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  }
  logger->set_level(settings.level);
  logger->flush_on(spdlog::level::info);
  return logger;
}

}  // namespace

bool SetupLogging(const std::string& level, const std::string& format, const std::string& file) {
  settings.level = spdlog::level::from_str(level);
  if (settings.level == spdlog::level::off && level != "off") {
    std::cerr << "basind: invalid value '" << level << "' for --log-level\n";
    return false;
  }
  settings.format = format;
  settings.file = file;
  std::string error;
  auto logger = MakeLogger(&error);
  if (logger == nullptr) {
    std::cerr << "basind: cannot open --log-file " << file << ": " << error << "\n";
    return false;
  }
  spdlog::set_default_logger(std::move(logger));
  return true;
}

bool ReopenLogFile() {
  if (settings.file.empty()) return true;
  std::string error;
  auto logger = MakeLogger(&error);
  if (logger == nullptr) {
    spdlog::error("SIGHUP: cannot reopen --log-file {}: {}; logging to the old file", settings.file,
                  error);
    return false;
  }
  // Swapped atomically; a thread logging now finishes on the old file, which
  // closes when its last user lets go.
  spdlog::set_default_logger(std::move(logger));
  spdlog::info("SIGHUP: reopened {}", settings.file);
  return true;
}

}  // namespace basin
