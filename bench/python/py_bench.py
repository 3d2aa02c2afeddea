#!/usr/bin/env python3
"""Python clients side by side: the basin package against redis-py and the
standard library's multiprocessing.JoinableQueue, on one machine.

    bench/python/py_bench.py --basin HOST:PORT --redis HOST:PORT
        [--messages N] [--messages-unary N] [--runs R] [--quick]
        [--cases a,b,...] [--package-dir DIR] [--basin-bench PATH]
        [--server-pid NAME=PID ...] [--json FILE]

bench/python/compare.sh starts a private basind and redis-server and runs
this script against them; see bench/python/README.md.

Every case runs its producer and its consumer in two separate processes
(multiprocessing, "spawn" start method: fresh interpreters, no inherited
gRPC state), started together and released at once by a barrier once each
has connected. Each process measures its own CPU time (time.process_time:
every thread of the process, gRPC's included) from the barrier to the end of
its work. 100-byte payloads.

  basin-stream   basin.Producer (send + flush) -> basin.Consumer (msg.ack()
                 on every message), serializer "bytes", queue bounded at
                 100,000 as basin-bench's stream mode
  redis-batch    redis-py: LPUSH of 500 values per command -> RPOP key 500
                 (BRPOP to wait when the list is empty); no acks
  mp-joinable    multiprocessing.JoinableQueue: put -> get + task_done,
                 producer join()
  basin-unary    basin.JoinableQueue: put -> get + task_done, one message
                 per call, producer join() (queue bounded at 10,000 as
                 basin-bench's unary mode)
  redis-unary    redis-py: LPUSH one value -> BRPOP one value
  cpp-stream     the C++ SDK for reference: basin-bench --mode stream 1P/1C
                 in one process (its cpu_s / messages), and a producer-only
                 run (--consumers 0 --keep) for the producer's share
  cpp-unary      the same for --mode unary (put, get, task_done), no split

msg/s is end to end: messages / (last ack - first send), the stamps taken
with CLOCK_MONOTONIC in the two processes. "Last ack" is when the consumer
has received and finished N messages and (basin) closed its Consumer, which
waits for the broker to apply the last acks; the producer's flush/join end
counts too if later. Each run uses a fresh queue or list; afterwards the
script checks that the consumer got exactly N messages of N * 100 bytes and
that the broker saw exactly N put, N delivered and N finished (Redis: the
list is gone). A failed check fails the run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue as stdqueue
import re
import statistics
import subprocess
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[2]
SIZE = 100
PAYLOAD = b"p" * SIZE
REDIS_BATCH = 500
STREAM_QUEUE_MAX = 100_000  # basin-bench --mode stream's bound
UNARY_QUEUE_MAX = 10_000  # basin-bench --mode unary's bound

ALL_CASES = ["basin-stream", "basin-batch", "redis-batch", "mp-joinable", "cpp-stream", "basin-unary",
             "redis-unary", "cpp-unary"]
UNARY_CASES = {"basin-unary", "redis-unary", "cpp-unary"}
DESCRIPTION = {
    "basin-stream": "basin Producer → Consumer (ack each)",
    "basin-batch": f"basin Producer.send_many ×{REDIS_BATCH} → Consumer.batches (ack each batch)",
    "redis-batch": f"redis-py LPUSH ×{REDIS_BATCH} → RPOP count {REDIS_BATCH}",
    "mp-joinable": "multiprocessing.JoinableQueue put → get + task_done",
    "basin-unary": "basin.JoinableQueue put → get + task_done (1 per call)",
    "redis-unary": "redis-py LPUSH → BRPOP (1 per call)",
    "cpp-stream": "C++ SDK: basin-bench stream 1P/1C (one process)",
    "cpp-unary": "C++ SDK: basin-bench unary 1P/1C (one process)",
}


def now() -> float:
    """System-wide monotonic clock: comparable between the two processes."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def default_package_dir() -> Path:
    built = REPO / "build" / "client" / "python"
    if (built / "basin" / "v1" / "queue_pb2.py").is_file():
        return built
    return REPO / "client" / "python"


def stale_files(package_dir: Path) -> List[str]:
    """The basin/*.py files that differ from client/python's (a build copy
    made before the sources changed: it would measure old code)."""
    source = REPO / "client" / "python" / "basin"
    used = package_dir / "basin"
    if not source.is_dir() or not used.is_dir() or used.resolve() == source.resolve():
        return []
    differ = []
    for f in sorted(source.glob("*.py")):
        other = used / f.name
        if not other.is_file() or other.read_bytes() != f.read_bytes():
            differ.append(f.name)
    return differ


def redis_client(cfg: Dict[str, Any]) -> Any:
    import redis
    host, port = cfg["redis"].rsplit(":", 1)
    return redis.Redis(host=host, port=int(port))


# -- the workers: each returns a callable that does the measured work ------
#
# setup(cfg) runs before the barrier (imports, connections, consumer
# streams); the callable it returns runs after it and returns a dict with
# t_first (producer: the first send), t_end, count and nbytes (consumer).


def basin_stream_producer(cfg: Dict[str, Any]) -> Callable[[], Dict[str, Any]]:
    import basin
    producer = basin.Producer(cfg["name"], address=cfg["basin"], serializer="bytes",
                              max_batch_messages=cfg["batch"], linger=cfg["linger"])
    n, payload = cfg["n"], PAYLOAD

    def run() -> Dict[str, Any]:
        send = producer.send
        futures, last = None, None
        t_first = now()
        if cfg["keep_futures"]:
            futures = [send(payload) for _ in range(n)]
        else:
            for _ in range(n):
                last = send(payload)
        producer.flush()
        t_end = now()
        producer.close()
        failed = 0
        if futures is not None:
            failed = sum(1 for f in futures if f.exception() is not None)
        elif last is not None and last.exception() is not None:
            failed = 1
        return {"t_first": t_first, "t_end": t_end, "failed": failed}
    return run


def basin_stream_consumer(cfg: Dict[str, Any]) -> Callable[[], Dict[str, Any]]:
    import basin
    consumer = basin.Consumer(cfg["name"], address=cfg["basin"], serializer="bytes",
                              prefetch=cfg["prefetch"], ack_batch=cfg["ack_batch"])
    n = cfg["n"]

    def run() -> Dict[str, Any]:
        count = nbytes = 0
        if n:
            for msg in consumer:
                nbytes += len(msg.value)
                msg.ack()
                count += 1
                if count == n:
                    break
        consumer.close()  # the last acks, applied before the stream ends
        return {"t_end": now(), "count": count, "nbytes": nbytes}
    return run


def basin_batch_producer(cfg: Dict[str, Any]) -> Callable[[], Dict[str, Any]]:
    import basin
    producer = basin.Producer(cfg["name"], address=cfg["basin"], serializer="bytes",
                              max_batch_messages=cfg["batch"], linger=cfg["linger"])
    n = cfg["n"]
    chunk = [PAYLOAD] * REDIS_BATCH

    def run() -> Dict[str, Any]:
        futures = []
        t_first = now()
        left = n
        while left > 0:
            futures.append(producer.send_many(chunk if left >= REDIS_BATCH else chunk[:left]))
            left -= REDIS_BATCH
        producer.flush()
        t_end = now()
        producer.close()
        failed = sum(1 for f in futures if f.exception() is not None)
        return {"t_first": t_first, "t_end": t_end, "failed": failed}
    return run


def basin_batch_consumer(cfg: Dict[str, Any]) -> Callable[[], Dict[str, Any]]:
    import basin
    consumer = basin.Consumer(cfg["name"], address=cfg["basin"], serializer="bytes",
                              prefetch=cfg["prefetch"], ack_batch=cfg["ack_batch"])
    n = cfg["n"]

    def run() -> Dict[str, Any]:
        count = nbytes = 0
        if n:
            for batch in consumer.batches():
                for item in batch:  # as the redis consumer does with its items
                    nbytes += len(item)
                count += len(batch)
                batch.ack()
                if count >= n:
                    break
        consumer.close()
        return {"t_end": now(), "count": count, "nbytes": nbytes}
    return run


def redis_batch_producer(cfg: Dict[str, Any]) -> Callable[[], Dict[str, Any]]:
    r = redis_client(cfg)
    r.ping()
    key, n = cfg["name"], cfg["n"]
    batch = [PAYLOAD] * REDIS_BATCH

    def run() -> Dict[str, Any]:
        t_first = now()
        left = n
        while left >= REDIS_BATCH:
            r.lpush(key, *batch)
            left -= REDIS_BATCH
        if left:
            r.lpush(key, *batch[:left])
        return {"t_first": t_first, "t_end": now()}
    return run


def redis_batch_consumer(cfg: Dict[str, Any]) -> Callable[[], Dict[str, Any]]:
    r = redis_client(cfg)
    r.ping()
    key, n, wait = cfg["name"], cfg["n"], cfg["idle_timeout"]

    def run() -> Dict[str, Any]:
        count = nbytes = 0
        while count < n:
            items = r.rpop(key, min(REDIS_BATCH, n - count))
            if items is None:  # empty: wait for the next one without polling
                got = r.brpop(key, timeout=wait)
                if got is None:
                    raise RuntimeError(f"no message for {wait} s after {count} of {n}")
                items = [got[1]]
            for item in items:
                nbytes += len(item)
            count += len(items)
        return {"t_end": now(), "count": count, "nbytes": nbytes}
    return run


def mp_producer(cfg: Dict[str, Any]) -> Callable[[], Dict[str, Any]]:
    q, n, payload = cfg["mpq"], cfg["n"], PAYLOAD

    def run() -> Dict[str, Any]:
        put = q.put
        t_first = now()
        for _ in range(n):
            put(payload)
        q.join()
        return {"t_first": t_first, "t_end": now()}
    return run


def mp_consumer(cfg: Dict[str, Any]) -> Callable[[], Dict[str, Any]]:
    q, n = cfg["mpq"], cfg["n"]

    def run() -> Dict[str, Any]:
        get, task_done = q.get, q.task_done
        nbytes = 0
        for _ in range(n):  # plain get(): the parent's run timeout covers a hang
            nbytes += len(get())
            task_done()
        return {"t_end": now(), "count": n, "nbytes": nbytes}
    return run


def basin_unary_producer(cfg: Dict[str, Any]) -> Callable[[], Dict[str, Any]]:
    import basin
    q = basin.JoinableQueue(cfg["name"], address=cfg["basin"], serializer="bytes")
    n, payload = cfg["n"], PAYLOAD

    def run() -> Dict[str, Any]:
        put = q.put
        t_first = now()
        for _ in range(n):
            put(payload)
        q.join()
        return {"t_first": t_first, "t_end": now()}
    return run


def basin_unary_consumer(cfg: Dict[str, Any]) -> Callable[[], Dict[str, Any]]:
    import basin
    q = basin.JoinableQueue(cfg["name"], address=cfg["basin"], serializer="bytes")
    n = cfg["n"]

    def run() -> Dict[str, Any]:
        get, task_done = q.get, q.task_done
        nbytes = 0
        for _ in range(n):  # plain get(): the parent's run timeout covers a hang
            nbytes += len(get())
            task_done()
        return {"t_end": now(), "count": n, "nbytes": nbytes}
    return run


def redis_unary_producer(cfg: Dict[str, Any]) -> Callable[[], Dict[str, Any]]:
    r = redis_client(cfg)
    r.ping()
    key, n, payload = cfg["name"], cfg["n"], PAYLOAD

    def run() -> Dict[str, Any]:
        lpush = r.lpush
        t_first = now()
        for _ in range(n):
            lpush(key, payload)
        return {"t_first": t_first, "t_end": now()}
    return run


def redis_unary_consumer(cfg: Dict[str, Any]) -> Callable[[], Dict[str, Any]]:
    r = redis_client(cfg)
    r.ping()
    key, n, wait = cfg["name"], cfg["n"], cfg["idle_timeout"]

    def run() -> Dict[str, Any]:
        brpop = r.brpop
        nbytes = 0
        for i in range(n):
            got = brpop(key, timeout=wait)
            if got is None:
                raise RuntimeError(f"no message for {wait} s after {i} of {n}")
            nbytes += len(got[1])
        return {"t_end": now(), "count": n, "nbytes": nbytes}
    return run


WORKERS: Dict[str, Tuple[Callable[..., Any], Callable[..., Any]]] = {
    "basin-stream": (basin_stream_producer, basin_stream_consumer),
    "basin-batch": (basin_batch_producer, basin_batch_consumer),
    "redis-batch": (redis_batch_producer, redis_batch_consumer),
    "mp-joinable": (mp_producer, mp_consumer),
    "basin-unary": (basin_unary_producer, basin_unary_consumer),
    "redis-unary": (redis_unary_producer, redis_unary_consumer),
}


def worker(case: str, role: str, cfg: Dict[str, Any], barrier: Any, results: Any) -> None:
    """One side of one run, in its own process."""
    try:
        setup = WORKERS[case][0 if role == "producer" else 1]
        run = setup(cfg)
        barrier.wait(timeout=cfg["idle_timeout"])
        cpu0 = time.process_time()
        out = run()
        out["cpu"] = time.process_time() - cpu0
        results.put((role, out))
    except BaseException:  # noqa: BLE001 (reported to the parent, which fails the run)
        try:
            barrier.abort()
        except Exception:  # noqa: BLE001
            pass
        results.put((role, {"error": traceback.format_exc()}))


# -- the parent: fresh queue, the two processes, checks ----------------------


class RunFailed(Exception):
    pass


def server_ticks(pids: Dict[str, int]) -> Dict[str, int]:
    """utime + stime of each server process, in clock ticks."""
    ticks = {}
    for name, pid in pids.items():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks[name] = int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return ticks


SERVER_OF = {"basin-stream": "basind", "basin-batch": "basind", "basin-unary": "basind", "redis-batch": "redis",
             "redis-unary": "redis", "cpp-stream": "basind", "cpp-unary": "basind"}


def server_cpu_us(case: str, n: int, pids: Dict[str, int], before: Dict[str, int],
                  after: Dict[str, int]) -> Optional[float]:
    name = SERVER_OF.get(case)
    if name is None or name not in before or name not in after:
        return None
    return (after[name] - before[name]) / os.sysconf("SC_CLK_TCK") * 1e6 / n


def prepare(case: str, cfg: Dict[str, Any], ctx: Any) -> Callable[[], None]:
    """Makes the run's fresh queue; returns the check that runs afterwards."""
    name, n = cfg["name"], cfg["n"]
    if case.startswith("basin-"):
        import basin
        maxsize = UNARY_QUEUE_MAX if case in UNARY_CASES else STREAM_QUEUE_MAX
        q = basin.JoinableQueue(name, maxsize, address=cfg["basin"], serializer="bytes")
        stats = q.info().stats
        if stats.total_put or stats.unfinished:
            raise RunFailed(f"queue {name} is not fresh")

        def check() -> None:
            s = q.info().stats
            got = (s.total_put, s.total_delivered, s.total_done, s.unfinished,
                   s.total_redelivered)
            q.delete_queue()
            if got != (n, n, n, 0, 0):
                raise RunFailed(f"broker counted put/delivered/done/unfinished/redelivered "
                                f"{got}, expected ({n}, {n}, {n}, 0, 0)")
        return check
    if case.startswith("redis-"):
        r = redis_client(cfg)
        if r.exists(name):
            raise RunFailed(f"list {name} is not fresh")

        def check() -> None:
            left = r.llen(name)
            r.delete(name)
            if left:
                raise RunFailed(f"{left} messages left in the list")
        return check
    if case == "mp-joinable":
        cfg["mpq"] = ctx.JoinableQueue()

        def check() -> None:
            q = cfg.pop("mpq")
            if not q.empty():
                raise RunFailed("the multiprocessing queue is not empty")
        return check
    raise ValueError(case)


def collect(procs: Dict[str, Any], results: Any, timeout: float) -> Dict[str, Dict[str, Any]]:
    """Both sides' results, or RunFailed (an error, a dead process, the timeout)."""
    out: Dict[str, Dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while len(out) < 2:
        left = deadline - time.monotonic()
        try:
            role, result = results.get(timeout=min(1.0, max(0.1, left)))
        except stdqueue.Empty:
            dead = [r for r, p in procs.items() if r not in out and not p.is_alive()]
            if dead:
                raise RunFailed(f"the {', '.join(dead)} process died (exit "
                                f"{[procs[r].exitcode for r in dead]})") from None
            if left <= 0:
                raise RunFailed(f"no result within {timeout:.0f} s") from None
            continue
        if "error" in result:
            raise RunFailed(f"{role}: {result['error'].strip()}")
        out[role] = result
    return out


def run_python_case(case: str, base: Dict[str, Any], n: int, ctx: Any,
                    pids: Dict[str, int]) -> Dict[str, Any]:
    cfg = dict(base, n=n, name=f"pybench.{case}.{uuid.uuid4().hex[:12]}")
    check = prepare(case, cfg, ctx)
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    procs = {role: ctx.Process(target=worker, args=(case, role, cfg, barrier, results),
                               name=f"{case}-{role}", daemon=True)
             for role in ("producer", "consumer")}
    try:
        before = server_ticks(pids)
        for p in procs.values():
            p.start()
        out = collect(procs, results, cfg["run_timeout"])
        for p in procs.values():
            p.join(30)
        after = server_ticks(pids)
        prod, cons = out["producer"], out["consumer"]
        if prod.get("failed"):
            raise RunFailed(f"{prod['failed']} sends failed")
        if cons["count"] != n or cons["nbytes"] != n * SIZE:
            raise RunFailed(f"consumer got {cons['count']} messages / {cons['nbytes']} "
                            f"bytes, expected {n} / {n * SIZE}")
    except BaseException:
        for p in procs.values():
            if p.is_alive():
                p.terminate()
                p.join(5)
        try:
            check()  # drops the queue or list; the run has failed already
        except Exception:  # noqa: BLE001
            pass
        raise
    check()
    seconds = max(prod["t_end"], cons["t_end"]) - prod["t_first"]
    return {
        "case": case, "messages": n, "seconds": seconds, "msg_per_s": n / seconds,
        "producer_cpu_us": prod["cpu"] * 1e6 / n, "consumer_cpu_us": cons["cpu"] * 1e6 / n,
        "client_cpu_us": (prod["cpu"] + cons["cpu"]) * 1e6 / n,
        "server_cpu_us": server_cpu_us(case, n, pids, before, after),
    }


def run_cpp_case(case: str, base: Dict[str, Any], n: int,
                 pids: Dict[str, int]) -> Dict[str, Any]:
    """basin-bench 1P/1C in one process; for stream, then a producer-only
    run for the producer's share (unary mode needs consumers: no split)."""
    tool = base["basin_bench"]
    mode = "stream" if case == "cpp-stream" else "unary"
    common = [tool, "--addr", base["basin"], "--json", "--mode", mode, "--size", str(SIZE),
              "--messages", str(n)]
    if mode == "stream":
        common += ["--batch", str(base["batch"]), "--prefetch", str(base["prefetch"]),
                   "--linger-us", str(int(base["linger"] * 1e6))]

    def bench(*extra: str) -> Tuple[Dict[str, Any], str]:
        done = subprocess.run(common + list(extra), capture_output=True, text=True,
                              timeout=base["run_timeout"])
        if done.returncode != 0:
            raise RunFailed(f"basin-bench exited {done.returncode}: {done.stderr[-500:]}")
        line = [s for s in done.stdout.splitlines() if s.startswith("{")]
        if not line:
            raise RunFailed(f"basin-bench printed no JSON: {done.stdout[-500:]}")
        return json.loads(line[-1]), done.stderr

    before = server_ticks(pids)
    both, _ = bench("--producers", "1", "--consumers", "1")
    after = server_ticks(pids)
    if both.get("acked") != n:
        raise RunFailed(f"basin-bench acked {both.get('acked')} of {n}")
    total = both["cpu_s"] * 1e6 / n
    result = {
        "case": case, "messages": n, "seconds": both["seconds"],
        "msg_per_s": float(both["received_per_sec"]), "producer_cpu_us": None,
        "consumer_cpu_us": None, "client_cpu_us": total,
        "server_cpu_us": server_cpu_us(case, n, pids, before, after),
        "estimated_split": True,
    }
    if mode == "stream":
        alone, err = bench("--producers", "1", "--consumers", "0", "--keep")
        left = re.search(r"left (\d+) messages in queue (\S+)", err)
        if left:  # the producer-only run leaves its queue full: drop it
            import basin
            basin.Client(base["basin"]).delete_queue(left.group(2))
        if not left or int(left.group(1)) != n:
            raise RunFailed("the producer-only basin-bench run did not leave "
                            f"{n} messages: {err[-300:]}")
        producer = alone["cpu_s"] * 1e6 / n
        result["producer_cpu_us"] = producer
        result["consumer_cpu_us"] = total - producer
    return result


# -- output -------------------------------------------------------------------


def fmt(v: Optional[float], digits: int = 1) -> str:
    if v is None:
        return "–"
    return f"{v:,.0f}" if digits == 0 else f"{v:,.{digits}f}"


def table(rows: Dict[str, List[Dict[str, Any]]], errors: Dict[str, List[str]],
          skipped: Dict[str, str], runs: int) -> str:
    lines = ["| case | messages | msg/s end to end | producer CPU µs/msg | consumer CPU µs/msg "
             "| client CPU µs/msg | server CPU µs/msg |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for case in ALL_CASES:
        if case in skipped:
            lines.append(f"| {DESCRIPTION[case]} | – | skipped: {skipped[case]} | | | | |")
            continue
        got = rows.get(case, [])
        if not got:
            if case in errors:
                lines.append(f"| {DESCRIPTION[case]} | – | failed ({len(errors[case])} runs) "
                             "| | | | |")
            continue

        def med(key: str) -> Optional[float]:
            vals = [r[key] for r in got if r.get(key) is not None]
            return statistics.median(vals) if vals else None
        note = f" ({len(got)} of {runs} runs)" if len(got) < runs else ""
        consumer = fmt(med("consumer_cpu_us"))
        if got[0].get("estimated_split") and consumer != "–":
            consumer = f"≈{consumer}"
        lines.append(f"| {DESCRIPTION[case]}{note} | {got[0]['messages']:,} "
                     f"| {fmt(med('msg_per_s'), 0)} | {fmt(med('producer_cpu_us'))} "
                     f"| {consumer} | {fmt(med('client_cpu_us'))} "
                     f"| {fmt(med('server_cpu_us'))} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--basin", default="127.0.0.1:7878", help="basind's HOST:PORT")
    ap.add_argument("--redis", default="127.0.0.1:6379", help="redis-server's HOST:PORT")
    ap.add_argument("--messages", type=int, default=None,
                    help="messages per streaming/batched run (default 200,000)")
    ap.add_argument("--messages-unary", type=int, default=None,
                    help="messages per one-per-call run (default 20,000)")
    ap.add_argument("--runs", type=int, default=None, help="runs per case (default 3)")
    ap.add_argument("--quick", action="store_true",
                    help="a trial: 20,000 / 5,000 messages, 1 run (unless given)")
    ap.add_argument("--cases", default=",".join(ALL_CASES),
                    help=f"comma-separated subset of {','.join(ALL_CASES)}")
    ap.add_argument("--package-dir", default=None,
                    help="directory holding the basin package (default: build/client/python "
                         "if it has the generated stubs, else client/python)")
    ap.add_argument("--basin-bench", default=str(REPO / "build" / "bench" / "basin-bench"),
                    help="the C++ basin-bench binary (the cpp-* cases are skipped without it)")
    ap.add_argument("--server-pid", action="append", default=[], metavar="NAME=PID",
                    help="basind=PID / redis=PID: adds the server's CPU time per message")
    ap.add_argument("--prefetch", type=int, default=10_000,
                    help="Consumer prefetch, also given to basin-bench (its own default: 500)")
    ap.add_argument("--ack-batch", type=int, default=None,
                    help="Consumer ack_batch (default prefetch / 2 + 1, as basin-bench)")
    ap.add_argument("--batch", type=int, default=5000,
                    help="Producer max_batch_messages (the basin package's default), also "
                         "given to basin-bench (its own default: 500)")
    ap.add_argument("--linger-us", type=int, default=1000, help="Producer linger")
    ap.add_argument("--keep-futures", action="store_true",
                    help="basin-stream: keep every send()'s future and check each one "
                         "(default: only the last; flush() waits for all)")
    ap.add_argument("--json", metavar="FILE", help="also write every run's figures here")
    args = ap.parse_args()

    n_stream = args.messages or (20_000 if args.quick else 200_000)
    n_unary = args.messages_unary or (5_000 if args.quick else 20_000)
    runs = args.runs or (1 if args.quick else 3)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(ALL_CASES)
    if unknown:
        ap.error(f"unknown cases: {', '.join(sorted(unknown))}")

    package_dir = Path(args.package_dir) if args.package_dir else default_package_dir()
    sys.path.insert(0, str(package_dir.resolve()))
    # Spawned children get sys.path from the parent; PYTHONPATH for anything else.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(package_dir.resolve())] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    pids = {}
    for item in args.server_pid:
        name, _, pid = item.partition("=")
        pids[name] = int(pid)

    stale = stale_files(package_dir)
    if stale:
        print(f"py_bench.py: WARNING: {package_dir}/basin differs from client/python/basin "
              f"({', '.join(stale)}): rebuild (target basin_python) or pass --package-dir "
              "client/python to measure the current sources", file=sys.stderr)
    skipped: Dict[str, str] = {}
    try:
        import basin
        basin_info = f"basin {basin.__version__} from {Path(basin.__file__).parent}"
    except ImportError as e:
        basin_info = f"basin not importable from {package_dir}: {e}"
        for c in cases:
            if c.startswith("basin-"):
                skipped[c] = "basin not importable"
    try:
        import redis
        import redis.utils
        redis_info = (f"redis-py {redis.__version__} (hiredis "
                      f"{'on' if redis.utils.HIREDIS_AVAILABLE else 'off'})")
        redis_client({"redis": args.redis}).ping()
    except Exception as e:  # noqa: BLE001
        redis_info = f"redis unavailable: {e}"
        for c in cases:
            if c.startswith("redis-"):
                skipped[c] = "redis unavailable"
    for c in ("cpp-stream", "cpp-unary"):
        if c not in cases:
            continue
        if not os.access(args.basin_bench, os.X_OK):
            skipped[c] = f"no {args.basin_bench} (not built)"
        elif c == "cpp-stream" and "basin-stream" in skipped:
            skipped[c] = "basin not importable (needed to drop its queue)"

    base = {
        "basin": args.basin, "redis": args.redis, "prefetch": args.prefetch,
        "ack_batch": args.ack_batch or args.prefetch // 2 + 1, "batch": args.batch,
        "linger": args.linger_us / 1e6, "keep_futures": args.keep_futures,
        "idle_timeout": 60.0, "basin_bench": args.basin_bench,
    }
    try:
        import grpc
        grpc_info = f"grpcio {grpc.__version__}"
    except ImportError:
        grpc_info = "grpcio missing"
    print(f"# Python clients, {SIZE}-byte messages; {n_stream:,} messages per streaming run, "
          f"{n_unary:,} per one-per-call run; median of {runs} run(s)"
          f"{' (QUICK TRIAL)' if args.quick else ''}", file=sys.stderr)
    print(f"# Python {sys.version.split()[0]}, {basin_info}, {grpc_info}, {redis_info}",
          file=sys.stderr)

    ctx = mp.get_context("spawn")
    rows: Dict[str, List[Dict[str, Any]]] = {}
    errors: Dict[str, List[str]] = {}
    for run in range(1, runs + 1):
        for case in cases:  # cases alternate, so drift falls on all of them
            if case in skipped:
                continue
            n = n_unary if case in UNARY_CASES else n_stream
            base["run_timeout"] = max(120.0, n / 500)
            try:
                if case.startswith("cpp-"):
                    r = run_cpp_case(case, base, n, pids)
                else:
                    r = run_python_case(case, base, n, ctx, pids)
            except Exception as e:  # noqa: BLE001 (RunFailed, a timeout, a broker error)
                e = e if isinstance(e, RunFailed) else RunFailed(f"{type(e).__name__}: {e}")
                errors.setdefault(case, []).append(str(e))
                print(f"run {run} {case}: FAILED: {e}", file=sys.stderr)
                continue
            rows.setdefault(case, []).append(r)
            print(f"run {run} {case}: {r['msg_per_s']:,.0f} msg/s, CPU µs/msg producer "
                  f"{fmt(r['producer_cpu_us'])} consumer {fmt(r['consumer_cpu_us'])} "
                  f"client {fmt(r['client_cpu_us'])} server {fmt(r['server_cpu_us'])}",
                  file=sys.stderr)

    print(f"Python clients on one machine ({os.cpu_count()} cores), {SIZE}-byte messages, "
          f"producer and consumer in separate processes; median of {runs} run(s)"
          f"{' — QUICK TRIAL' if args.quick else ''}. {basin_info.split(' from ')[0]}, "
          f"{grpc_info}, {redis_info}, Python {sys.version.split()[0]}."
          + (f" WARNING: basin measured from {package_dir}, which differs from "
             f"client/python ({', '.join(stale)})." if stale else ""))
    print()
    print(table(rows, errors, skipped, runs))
    if "cpp-stream" in rows or "cpp-unary" in rows:
        print()
        print("C++ rows: basin-bench runs producer and consumer as threads of one process; "
              "client CPU is its cpu_s / messages (a progress thread included); stream: "
              "producer CPU from a producer-only run (--consumers 0 --keep), consumer CPU ≈ "
              "the difference; unary: no split.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": rows, "errors": errors, "skipped": skipped}, f, indent=1)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
