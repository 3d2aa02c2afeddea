// The child-process workers: `basin_soak --child produce|consume ...` runs a
// producer or a consumer that reports, one line per event on stdout, what it
// saw before acting on it; the parent reads the lines into the Ledger and
// SIGKILLs the child at a random moment.
//   c ID Q          confirmed put            f ID Q   refused put
//   r ID Q DC OK N  delivered (OK: payload matched, N bytes)
//   d ID Q DC       task_done answered OK    u        outcome unknown
//   x TEXT          a violation seen         e        an error, retried
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "basin/client.h"
#include "basin/consumer.h"
#include "basin/producer.h"
#include "broker_process.h"
#include "queues.h"
#include "worker_support.h"

namespace basin::soak {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// One line a child printed: what it saw, before it acted on it.
void ApplyChildLine(SoakContext& ctx, const std::string& line) {
  std::istringstream in(line);
  std::string kind;
  in >> kind;
  uint64_t id = 0;
  int q = -1;
  uint32_t dc = 0;
  int ok = 0;
  size_t size = 0;
  auto valid_queue = [&] { return q >= 0 && q < static_cast<int>(kQueues.size()); };
  if (kind == "c" && in >> id >> q && valid_queue()) {
    ctx.ledger->Confirmed(id, q);
  } else if (kind == "f" && in >> id >> q && valid_queue()) {
    ctx.ledger->Refused(id, q);
  } else if (kind == "r" && in >> id >> q >> dc >> ok >> size && valid_queue()) {
    ctx.ledger->ReceivedChecked(id, q, dc, ok == 1, size);
  } else if (kind == "d" && in >> id >> q >> dc && valid_queue()) {
    ctx.ledger->Finished(id, q, dc);
  } else if (kind == "x") {
    ctx.ledger->Fail("child: " + line.substr(2));
  } else if (kind == "u") {
    ctx.counters->Add(Count::kUnknownOutcome);
  } else if (kind == "e") {
    ctx.counters->Add(Count::kOtherErrors);
  } else {
    ctx.ledger->Fail("child printed an unexpected line: '" + line + "'");
  }
}

// In the child: one line to the parent, written at once (a pipe write of
// less than PIPE_BUF bytes is atomic, so threads do not interleave).
void Say(const std::string& line) {
  const std::string out = line + "\n";
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::write(STDOUT_FILENO, out.data() + done, out.size() - done);
    if (n <= 0) _exit(3);  // the parent is gone
    done += static_cast<size_t>(n);
  }
}

std::string Line(char kind, uint64_t id, int q) {
  return std::string(1, kind) + " " + std::to_string(id) + " " + std::to_string(q);
}

void ChildProduce(const Client& client, int q, uint64_t id_base, Rng& rng) {
  const std::string name = kQueues[static_cast<size_t>(q)].name;
  uint32_t seq = 0;
  for (;;) {
    try {
      if (rng.Chance(0.6)) {
        ProducerOptions opts;
        opts.max_batch_messages = rng.Uniform(1, 500);
        opts.linger = std::chrono::microseconds(rng.Uniform(0, 2000));
        opts.max_in_flight_batches = rng.Uniform(1, 16);
        Producer p(client, name, opts);
        const uint64_t n = rng.Uniform(1, 2000);
        for (uint64_t i = 0; i < n; ++i) {
          const uint64_t id = id_base + seq++;
          p.send(
              OutgoingMessage{MakePayload(id), IdHeaders(id), {}},
              [id, q](uint64_t, std::exception_ptr error) { Say(error ? "u" : Line('c', id, q)); });
        }
        if (rng.Chance(0.5)) p.flush();
      } else {
        const Queue queue = client.queue(name);
        const uint64_t n = rng.Uniform(1, 200);
        for (uint64_t i = 0; i < n; ++i) {
          const uint64_t id = id_base + seq++;
          try {
            queue.put(MakePayload(id), rng.Ms(0, 1000), IdHeaders(id));
            Say(Line('c', id, q));
          } catch (const Full&) {
            Say(Line('f', id, q));
          } catch (const TooManyWaiters&) {
            Say(Line('f', id, q));
          } catch (const std::exception&) {
            Say("u");
          }
        }
      }
    } catch (const std::exception&) {
      Say("e");
    }
  }
}

void ChildConsume(const Client& client, int q, Rng& rng) {
  const std::string name = kQueues[static_cast<size_t>(q)].name;
  auto report = [q](const Message& m) {
    if (auto p = DeadLetterProblem(q, FindHeader(m.headers(), kOriginalQueueHeader)))
      Say("x " + *p);
    const uint64_t id = IdOf(m.headers());
    Say(Line('r', id, q) + " " + std::to_string(m.delivery_count()) + " " +
        (PayloadMatches(id, m.payload()) ? "1" : "0") + " " + std::to_string(m.payload().size()));
  };
  for (;;) {
    try {
      if (rng.Chance(0.5)) {
        ConsumerOptions opts;
        opts.prefetch = static_cast<uint32_t>(rng.Uniform(1, 300));
        opts.ack_batch = rng.Uniform(1, 64);
        Consumer consumer(client, name, opts);
        while (auto m = consumer.next()) {  // blocks while empty: the parent kills it
          report(*m);
          if (rng.Chance(0.9)) consumer.ack(*m);
        }
      } else {
        const Queue queue = client.queue(name);
        for (;;) {
          try {
            const Message m = queue.get(rng.Ms(10, 1000), rng.Ms(300, 3000));
            report(m);
            if (rng.Chance(0.8)) {
              queue.task_done(m);
              Say(Line('d', IdOf(m.headers()), q) + " " + std::to_string(m.delivery_count()));
            }
          } catch (const Empty&) {
          } catch (const DeliveryError&) {
          }
        }
      }
    } catch (const std::exception&) {
      Say("e");
    }
  }
}

}  // namespace

void ChildWorker(SoakContext& ctx, Worker& w, bool producer) {
  const std::atomic<bool>& stop = producer ? ctx.stop_producing : ctx.stop_consuming;
  while (!stop) {
    const uint32_t inc = w.NextIncarnation();
    const int q = producer ? ProducibleQueue(w.rng) : AnyQueue(w.rng);
    const std::vector<std::string> args = {
        "--child",         producer ? "produce" : "consume",        ctx.address,
        std::to_string(q), std::to_string(MakeId(w.index, inc, 0)), std::to_string(w.rng.Next())};
    std::unique_ptr<testing::Process> child;
    {
      std::lock_guard lock(ctx.spawn_mu);
      child = std::make_unique<testing::Process>(ctx.self_path, args);
    }
    // Read what it reports until its moment comes (or it dies first: EOF).
    const auto kill_at = Clock::now() + w.rng.Ms(100, 4000);
    for (;;) {
      const auto left = std::chrono::duration_cast<milliseconds>(kill_at - Clock::now());
      if (left.count() <= 0) break;
      const auto line = child->ReadLine(left);
      if (!line) break;
      ApplyChildLine(ctx, *line);
    }
    child->Signal(SIGKILL);  // not reaped yet, so the pid is still this child's
    ctx.counters->Add(Count::kKills);
    // Everything it wrote before it died is in the pipe: read to EOF.
    while (const auto line = child->ReadLine(std::chrono::seconds(10))) ApplyChildLine(ctx, *line);
    const auto status = child->Wait(std::chrono::seconds(10));
    if (!status) {
      ctx.ledger->Fail("a child did not die of SIGKILL within 10 s");
    } else if (!WIFSIGNALED(*status) || WTERMSIG(*status) != SIGKILL) {
      // It ended by itself: a crash, an abort, or an exit.
      ctx.ledger->Fail(std::string("a ") + (producer ? "producer" : "consumer") +
                       " child ended by itself (wait status " + std::to_string(*status) + ")");
    }
  }
}

int ChildMain(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: basin_soak --child produce|consume ADDR QUEUE_INDEX ID_BASE SEED\n";
    return 2;
  }
  const std::string mode = argv[0];
  const int q = std::stoi(argv[2]);
  const uint64_t id_base = std::stoull(argv[3]);
  Rng rng(std::stoull(argv[4]));
  if (q < 0 || q >= static_cast<int>(kQueues.size())) return 2;
  signal(SIGPIPE, SIG_DFL);
  Client client(argv[1]);
  if (mode == "produce") ChildProduce(client, q, id_base, rng);
  if (mode == "consume") ChildConsume(client, q, rng);
  return 2;
}

}  // namespace basin::soak
