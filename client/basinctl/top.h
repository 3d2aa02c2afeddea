// `basinctl top`: a live terminal view of the broker's queues and topics with
// rates, redrawn each interval with plain ANSI escapes (no curses).
#pragma once

#include <chrono>
#include <string>

#include "basin/client.h"

namespace basinctl {

// Redraws every `interval` until interrupted (SIGINT, SIGTERM) or, if
// `iterations` > 0, after that many frames. On a terminal each frame
// replaces the last; otherwise frames follow one another, separated by a
// blank line. Returns the exit status.
int RunTop(const basin::Client& client, const std::string& address,
           std::chrono::milliseconds interval, int iterations);

}  // namespace basinctl
