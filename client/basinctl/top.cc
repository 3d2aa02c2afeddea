#include "top.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace basinctl {
namespace {

volatile std::sig_atomic_t stop_requested = 0;
void RequestStop(int) { stop_requested = 1; }

// Totals of one queue or topic at the last frame, for rates.
using Totals = std::map<std::string, std::vector<uint64_t>>;

std::string Rate(uint64_t now, const std::vector<uint64_t>* before, size_t i, double seconds) {
  if (before == nullptr || seconds <= 0 || now < (*before)[i]) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", static_cast<double>(now - (*before)[i]) / seconds);
  return buf;
}

std::string Bytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(units)) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

int TerminalRows() {
  winsize w{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &w) == 0 && w.ws_row > 0) return w.ws_row;
  return 0;  // not a terminal: no limit
}

class Frame {
 public:
  Frame(const basin::Client& client, std::string address)
      : client_(client), address_(std::move(address)) {}

  // One frame's text.
  std::string Draw(double seconds, int max_rows) {
    const auto info = client_.server_info();
    const auto queues = client_.list_queues();
    const auto topics = client_.list_topics();
    std::string out;
    char line[512];
    std::snprintf(
        line, sizeof line, "basin %s  %s  up %llds  memory %s of %s  queues %zu  topics %zu\n\n",
        address_.c_str(), info.version.c_str(), static_cast<long long>(info.uptime.count() / 1000),
        Bytes(info.limits.memory_used_bytes).c_str(), Bytes(info.limits.max_memory_bytes).c_str(),
        queues.size(), topics.topics.size());
    out += line;
    // Rows left for the two tables' bodies, after headers and blank lines.
    int budget = max_rows > 0 ? std::max(2, max_rows - 7) : 1 << 30;
    const int queue_rows = std::min<int>(static_cast<int>(queues.size()),
                                         topics.topics.empty() ? budget : (budget + 1) / 2);
    std::snprintf(line, sizeof line, "%-28s %9s %9s %9s %9s %9s %9s %8s %8s %5s\n", "QUEUE",
                  "READY", "IN_FLIGHT", "UNFINISH", "PUT/s", "DELIV/s", "DONE/s", "REDELIV", "DEAD",
                  "CONS");
    out += line;
    Totals queue_totals;
    for (size_t i = 0; i < queues.size(); ++i) {
      const auto& q = queues[i];
      const auto& s = q.stats;
      std::vector<uint64_t> totals = {s.total_put, s.total_delivered, s.total_done};
      const auto it = queue_totals_.find(q.name);
      const std::vector<uint64_t>* before = it == queue_totals_.end() ? nullptr : &it->second;
      if (static_cast<int>(i) < queue_rows) {
        std::snprintf(line, sizeof line,
                      "%-28.28s %9llu %9llu %9llu %9s %9s %9s %8llu %8llu %5zu\n", q.name.c_str(),
                      static_cast<unsigned long long>(s.size),
                      static_cast<unsigned long long>(s.in_flight),
                      static_cast<unsigned long long>(s.unfinished),
                      Rate(s.total_put, before, 0, seconds).c_str(),
                      Rate(s.total_delivered, before, 1, seconds).c_str(),
                      Rate(s.total_done, before, 2, seconds).c_str(),
                      static_cast<unsigned long long>(s.total_redelivered),
                      static_cast<unsigned long long>(s.total_dead_lettered), s.consumers.size());
        out += line;
      }
      queue_totals[q.name] = std::move(totals);
    }
    if (static_cast<int>(queues.size()) > queue_rows) {
      out += "... " + std::to_string(queues.size() - static_cast<size_t>(queue_rows)) +
             " more queues\n";
    }
    queue_totals_ = std::move(queue_totals);
    if (!topics.topics.empty()) {
      const int topic_rows =
          std::min<int>(static_cast<int>(topics.topics.size()), std::max(1, budget - queue_rows));
      std::snprintf(line, sizeof line, "\n%-28s %9s %9s %9s %9s %9s\n", "TOPIC", "SUBS", "PUB/s",
                    "DELIV/s", "DROPPED", "ROUTED");
      out += line;
      Totals topic_totals;
      for (size_t i = 0; i < topics.topics.size(); ++i) {
        const auto& t = topics.topics[i];
        const auto it = topic_totals_.find(t.name);
        const std::vector<uint64_t>* before = it == topic_totals_.end() ? nullptr : &it->second;
        if (static_cast<int>(i) < topic_rows) {
          std::snprintf(line, sizeof line, "%-28.28s %9llu %9s %9s %9llu %9llu\n", t.name.c_str(),
                        static_cast<unsigned long long>(t.subscribers),
                        Rate(t.published, before, 0, seconds).c_str(),
                        Rate(t.delivered, before, 1, seconds).c_str(),
                        static_cast<unsigned long long>(t.dropped),
                        static_cast<unsigned long long>(t.routed));
          out += line;
        }
        topic_totals[t.name] = {t.published, t.delivered};
      }
      if (static_cast<int>(topics.topics.size()) > topic_rows) {
        out += "... " + std::to_string(topics.topics.size() - static_cast<size_t>(topic_rows)) +
               " more topics\n";
      }
      topic_totals_ = std::move(topic_totals);
    }
    return out;
  }

 private:
  const basin::Client& client_;
  const std::string address_;
  Totals queue_totals_, topic_totals_;
};

}  // namespace

int RunTop(const basin::Client& client, const std::string& address,
           std::chrono::milliseconds interval, int iterations) {
  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  std::signal(SIGINT, RequestStop);
  std::signal(SIGTERM, RequestStop);
  Frame frame(client, address);
  auto last = std::chrono::steady_clock::now();
  if (tty) std::fputs("\x1b[?25l", stdout);  // hide the cursor while drawing
  int status = 0;
  for (int n = 0; !stop_requested && (iterations <= 0 || n < iterations); ++n) {
    const auto now = std::chrono::steady_clock::now();
    const double seconds = n == 0 ? 0 : std::chrono::duration<double>(now - last).count();
    last = now;
    std::string text;
    try {
      text = frame.Draw(seconds, tty ? TerminalRows() : 0);
      status = 0;  // the broker answers (again)
    } catch (const std::exception& e) {
      status = 1;
      if (!tty) {
        std::fprintf(stderr, "basinctl top: %s\n", e.what());
        break;
      }
      // On a terminal the view stays, saying what is wrong, until Ctrl-C.
      text = std::string("basinctl top: ") + e.what() + "\n";
    }
    // Home, the frame, then clear what an earlier, longer frame left below.
    if (tty) {
      std::fputs("\x1b[H", stdout);
      for (size_t at = 0, nl; (nl = text.find('\n', at)) != std::string::npos; at = nl + 1) {
        std::fwrite(text.data() + at, 1, nl - at, stdout);
        std::fputs("\x1b[K\n", stdout);  // clear the rest of each line
      }
      std::fputs("\x1b[J", stdout);
    } else {
      std::fputs(n == 0 ? "" : "\n", stdout);
      std::fputs(text.c_str(), stdout);
    }
    std::fflush(stdout);
    if (iterations > 0 && n + 1 >= iterations) break;
    // Sleep in short steps so that Ctrl-C ends it at once.
    const auto wake = now + interval;
    while (!stop_requested && std::chrono::steady_clock::now() < wake) {
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
          wake - std::chrono::steady_clock::now(), std::chrono::milliseconds(50)));
    }
  }
  if (tty) std::fputs("\x1b[?25h", stdout);  // the cursor back
  std::fflush(stdout);
  return status;
}

}  // namespace basinctl
