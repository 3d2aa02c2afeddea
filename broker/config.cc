#include "broker/config.h"

#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <utility>

#include "broker/build_info.h"
#include "broker/config_file.h"
#include "broker/config_flags.h"
#include "broker/security/token_hash.h"

namespace basin {
namespace po = boost::program_options;

std::optional<std::chrono::nanoseconds> ParseDuration(const std::string& text) {
  // A number first: stod would take " 5", "inf" and "nan".
  if (text.empty() || !(std::isdigit(static_cast<unsigned char>(text[0])) || text[0] == '.')) {
    return std::nullopt;
  }
  size_t pos = 0;
  double value = 0;
  try {
    value = std::stod(text, &pos);
  } catch (...) {
    return std::nullopt;
  }
  if (value < 0) return std::nullopt;
  const std::string unit = text.substr(pos);
  double scale = 0;
  if (unit.empty() || unit == "s") {
    scale = 1e9;
  } else if (unit == "ms") {
    scale = 1e6;
  } else if (unit == "us") {
    scale = 1e3;
  } else if (unit == "m") {
    scale = 60e9;
  } else if (unit == "h") {
    scale = 3600e9;
  } else {
    return std::nullopt;
  }
  // Past ~292 years a duration no longer fits in int64 nanoseconds.
  if (value * scale > 9e18) return std::nullopt;
  return std::chrono::nanoseconds(static_cast<int64_t>(value * scale));
}

std::optional<uint64_t> ParseBytes(const std::string& text) {
  // Digits first: stoull would take " 5", "+5" and "-1" (as 2^64 - 1).
  if (text.empty() || !std::isdigit(static_cast<unsigned char>(text[0]))) return std::nullopt;
  size_t pos = 0;
  unsigned long long value = 0;
  try {
    value = std::stoull(text, &pos);
  } catch (...) {
    return std::nullopt;
  }
  std::string unit = text.substr(pos);
  std::transform(unit.begin(), unit.end(), unit.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  uint64_t scale = 0;
  if (unit.empty() || unit == "B") {
    scale = 1;
  } else if (unit == "K" || unit == "KB" || unit == "KIB") {
    scale = uint64_t{1} << 10;
  } else if (unit == "M" || unit == "MB" || unit == "MIB") {
    scale = uint64_t{1} << 20;
  } else if (unit == "G" || unit == "GB" || unit == "GIB") {
    scale = uint64_t{1} << 30;
  } else {
    return std::nullopt;
  }
  if (value > UINT64_MAX / scale) return std::nullopt;  // would wrap
  return value * scale;
}

uint64_t DefaultMaxMemory() {
  uint64_t total = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                   static_cast<uint64_t>(sysconf(_SC_PAGE_SIZE));
  // cgroup v2, then v1. "max" or an absurdly large v1 value means no limit.
  for (const char* path :
       {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream in(path);
    unsigned long long limit = 0;
    if (in >> limit && limit > 0 && limit < total) total = limit;
  }
  return total / 2;
}

namespace {

// Where a flag's value came from, in precedence order.
struct Source {
  std::string text;
  std::string where;  // "flag", "env BASIN_X", "FILE:LINE", "default"
  // How an error names it: "--max-memory", "BASIN_MAX_MEMORY", "max-memory (FILE:LINE)".
  std::string label;
};

std::optional<Source> Find(const config::Flag& f, const po::variables_map& vm,
                           const config::ConfigFile& file) {
  if (vm.count(f.name) != 0) {
    return Source{vm[f.name].as<std::string>(), "flag", std::string("--") + f.name};
  }
  const std::string env = config::EnvName(f);
  if (const char* value = std::getenv(env.c_str())) return Source{value, "env " + env, env};
  if (const auto it = file.values.find(f.name); it != file.values.end()) {
    return Source{it->second.text, it->second.where,
                  std::string(f.name) + " (" + it->second.where + ")"};
  }
  if (*f.default_text != '\0') return Source{f.default_text, "default", std::string("--") + f.name};
  return std::nullopt;
}

po::options_description Describe() {
  po::options_description desc(
      "basind: the Basin message broker\n\nEach flag is also read from BASIN_<NAME> (e.g. "
      "BASIN_LISTEN) and from the --config file (e.g. listen = \"0.0.0.0:7878\"); a flag wins "
      "over the environment, which wins over the file.\n\nOptions");
  desc.add_options()("help,h", "print this help")("version", "print the version and exit")(
      "config", po::value<std::string>()->value_name("FILE"),
      "TOML file of settings, queues and bindings (also BASIN_CONFIG)")(
      "config-reference", "print every setting as a Markdown table and exit")(
      "new-token", "print a new random bearer token and the hash a users file keeps of it")(
      "hash-token",
      "read a token from standard input (one line) and print the hash a users file keeps of it");
  for (const config::Flag& f : config::Flags()) {
    auto* value = po::value<std::string>()->value_name(config::ValueName(f.kind));
    if (f.kind == config::Kind::kBool) value->implicit_value("true");
    std::string help = f.help;
    if (*f.default_text != '\0' && f.kind != config::Kind::kBool) {
      help += std::string(" (default ") + f.default_text + ")";
    }
    desc.add_options()(f.name, value, help.c_str());
  }
  return desc;
}

// What no single flag can check: the memory split.
bool CheckMemory(Config& c, const std::optional<Source>& sub_memory) {
  core::TopicCaps& caps = c.limits.topic_caps;
  if (!sub_memory) {
    caps.max_subscriber_memory = c.limits.max_memory / 4;
  } else if (caps.max_subscriber_memory >= c.limits.max_memory) {
    // Set aside from --max-memory: all of it would leave queues nothing.
    std::cerr << "basind: invalid value '" << sub_memory->text << "' for " << sub_memory->label
              << ": must be less than --max-memory (" << c.limits.max_memory << " bytes)\n";
    return false;
  }
  // Queues get --max-memory less the share: a message that fits nowhere there
  // would wait for good.
  if (c.limits.max_memory - caps.max_subscriber_memory < c.limits.max_message_bytes) {
    std::cerr << "basind: --max-memory less --max-subscriber-memory ("
              << c.limits.max_memory - caps.max_subscriber_memory
              << " bytes) is below --max-message-bytes (" << c.limits.max_message_bytes << ")\n";
    return false;
  }
  return true;
}

// What no single flag can check: TLS files come in pairs, client
// certificates need a CA, and plaintext stays on loopback unless told.
bool CheckTls(Config& c) {
  auto fail = [](const std::string& why) {
    std::cerr << "basind: " << why << "\n";
    return false;
  };
  if (c.tls_cert.empty() != c.tls_key.empty()) {
    return fail("--tls-cert and --tls-key go together: give both or neither");
  }
  if (!c.tls_client_ca.empty() && c.tls_cert.empty()) {
    return fail("--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS first)");
  }
  if (c.tls_client_auth.empty()) c.tls_client_auth = c.tls_client_ca.empty() ? "none" : "require";
  if (c.tls_client_auth != "none" && c.tls_client_ca.empty()) {
    return fail("--tls-client-auth " + c.tls_client_auth +
                " needs --tls-client-ca, the CAs that client certificates are checked against");
  }
  return true;
}

// A broker other machines reach needs TLS, and a way to tell clients apart:
// users, or client certificates. Loopback stays open, so that the Quick
// start works as it is.
bool CheckExposure(const Config& c) {
  if (c.allow_insecure) return true;
  if (c.http_admin && !c.http_listen.empty() && !IsLoopbackAddress(c.http_listen)) {
    // The dashboard's queue actions send tokens (with users) and delete
    // queues; its listener is plaintext HTTP.
    std::cerr << "basind: --http-admin on --http-listen " << c.http_listen
              << " would take queue actions (and tokens) in plaintext from other machines: "
                 "listen on loopback and reach it through a TLS proxy, or --allow-insecure "
                 "(docs/security.md)\n";
    return false;
  }
  if (IsLoopbackAddress(c.listen)) return true;
  if (c.tls_cert.empty()) {
    std::cerr << "basind: --listen " << c.listen
              << " is reachable from other machines, and without --tls-cert/--tls-key every "
                 "token and message would cross the network readable: give a certificate, or "
                 "--allow-insecure if the network is private (docs/security.md)\n";
    return false;
  }
  if (c.users_file.empty() && c.tls_client_auth != "require") {
    std::cerr << "basind: --listen " << c.listen
              << " is reachable from other machines, and with no users (--users) and no "
                 "required client certificates (--tls-client-auth require) anyone who reaches "
                 "it may read and delete every queue: add users, or --allow-insecure "
                 "(docs/security.md)\n";
    return false;
  }
  return true;
}

}  // namespace

bool IsLoopbackAddress(const std::string& address) {
  const auto colon = address.rfind(':');
  std::string host = address.substr(0, colon == std::string::npos ? address.size() : colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  // 127.0.0.0/8 as a dotted quad; no name other than localhost is trusted,
  // since what it resolves to can change.
  if (host == "localhost" || host == "::1") return true;
  if (host.rfind("127.", 0) != 0) return false;
  int dots = 0;
  for (char ch : host) {
    if (ch == '.') {
      ++dots;
    } else if (!std::isdigit(static_cast<unsigned char>(ch))) {
      return false;
    }
  }
  return dots == 3;
}

std::optional<Config> ParseConfig(int argc, char** argv, int* exit_code) {
  *exit_code = 2;
  const po::options_description desc = Describe();
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "basind: " << e.what() << "\n";
    return std::nullopt;
  }
  if (vm.count("new-token") != 0 || vm.count("hash-token") != 0) {
    std::string token;
    if (vm.count("new-token") != 0) {
      token = security::NewToken();
      std::cout << "token: " << token << "\n";
    } else {
      std::getline(std::cin, token);
      if (!token.empty() && token.back() == '\r') token.pop_back();
      if (!security::ValidTokenText(token)) {
        std::cerr << "basind: a token is 1 to 4096 printable ASCII characters without spaces\n";
        return std::nullopt;
      }
      if (token.size() < 16) {
        std::cerr << "basind: warning: a token this short can be guessed; basind --new-token "
                     "makes a 256-bit one\n";
      }
    }
    std::cout << (vm.count("new-token") != 0 ? "hash:  " : "") << security::HashToken(token)
              << "\n";
    *exit_code = 0;
    return std::nullopt;
  }
  if (vm.count("help") != 0 || vm.count("version") != 0 || vm.count("config-reference") != 0) {
    if (vm.count("help") != 0) std::cout << desc << "\n";
    if (vm.count("version") != 0) {
      std::cout << "basind " << BuildVersion() << " (" << BuildRevision() << ", " << BuildType()
                << ")\n";
    }
    if (vm.count("config-reference") != 0) std::cout << config::Reference();
    *exit_code = 0;
    return std::nullopt;
  }

  Config c;
  config::ConfigFile file;
  if (vm.count("config") != 0) {
    c.config_file = vm["config"].as<std::string>();
  } else if (const char* path = std::getenv("BASIN_CONFIG")) {
    c.config_file = path;
  }
  if (!c.config_file.empty()) {
    std::string error;
    if (!config::ReadConfigFile(c.config_file, &file, &error)) {
      std::cerr << "basind: " << error << "\n";
      return std::nullopt;
    }
  }
  std::optional<Source> sub_memory;
  for (const config::Flag& f : config::Flags()) {
    const auto source = Find(f, vm, file);
    if (std::string(f.name) == "max-subscriber-memory") sub_memory = source;
    if (!source) {
      c.effective.push_back({f.name, "", "default"});
      continue;
    }
    if (const std::string why = f.apply(c, source->text); !why.empty()) {
      std::cerr << "basind: invalid value '" << source->text << "' for " << source->label << ": "
                << why << "\n";
      return std::nullopt;
    }
    c.effective.push_back({f.name, source->text, source->where});
  }
  // Computed defaults, shown as they took effect.
  if (c.limits.max_memory == 0) c.limits.max_memory = DefaultMaxMemory();
  if (!CheckMemory(c, sub_memory) || !CheckTls(c)) return std::nullopt;
  for (EffectiveSetting& e : c.effective) {
    if (!e.value.empty()) continue;
    if (e.name == "max-memory") e.value = std::to_string(c.limits.max_memory);
    if (e.name == "tls-client-auth") e.value = c.tls_client_auth;
    if (e.name == "max-subscriber-memory") {
      e.value = std::to_string(c.limits.topic_caps.max_subscriber_memory);
    }
  }
  c.limits.default_subscriber_buffer_messages = std::min(
      c.limits.default_subscriber_buffer_messages, c.limits.max_subscriber_buffer_messages);
  c.limits.default_subscriber_buffer_bytes =
      std::min(c.limits.default_subscriber_buffer_bytes, c.limits.max_subscriber_buffer_bytes);
  if (file.has_users) {
    if (!c.users_file.empty()) {
      std::cerr << "basind: users are in " << c.config_file << " and in --users " << c.users_file
                << ": keep them in one place\n";
      return std::nullopt;
    }
    c.users_file = c.config_file;
  }
  if (!CheckExposure(c)) return std::nullopt;
  c.queues = std::move(file.queues);
  c.bindings = std::move(file.bindings);
  *exit_code = 0;
  return c;
}

}  // namespace basin
