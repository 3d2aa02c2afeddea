"""The seed programs (client/python/examples) against the real basind.

Each example is a blog program about multiprocessing queues or Redis,
ported by changing its import and constructor lines (see each file's header
and examples/README.md). Here each runs as a real subprocess, as a user would
run it: its producers and consumers are its own multiprocessing children, so
every queue is shared across processes through the broker. The tests parse
what the programs print and check that every item produced was received
exactly once (as multisets; as sequences where a single producer and a
single consumer make the order certain), that the programs end by their own
mechanism (sentinel, join, daemon consumers, terminate()), and that the
broker's counters agree: nothing waiting, nothing in flight, nothing
unfinished, every message put delivered once and finished once.

Programs that never end by design (the blog says so: seed 002's first case,
seed 003's first producer/consumer, seed 004's polling consumers, the pub/sub
subscriber) are stopped by the test once their output shows everything was
received. Every subprocess runs in a process group of its own, with a
timeout, and the group is killed at the end of its test.

BASIN_SEED_FAST=1 makes the examples' time.sleep 1000 times shorter.
/work/shared/seeds (or BASIN_SEEDS_DIR), when present, is used to check that
each example differs from its seed only in the lines the header names.
"""

from __future__ import annotations

import codecs
import collections
import difflib
import glob
import os
import pty
import queue
import re
import signal
import subprocess
import sys
import threading
import tty
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

import basin
from conftest import ROOT, Broker, unique, wait_until

EXAMPLES = os.path.join(ROOT, "client", "python", "examples")
SEEDS = os.environ.get("BASIN_SEEDS_DIR", "/work/shared/seeds")
TIMEOUT = 120.0


class Program:
    """One example running in a process group of its own.

    Its stdout is a pseudo-terminal, as when run by hand: Python then writes
    each printed line with one write(), so the lines of its processes do not
    interleave within a line (through a pipe and ``-u``, ``print`` writes the
    text and the newline apart, and lines of two processes mix), and nothing
    is lost in a buffer when the program is stopped. The lines are read as
    they come."""

    def __init__(self, example: str, broker: Broker, queue_name: Optional[str] = None,
                 stdin: bool = False) -> None:
        env = dict(os.environ, BASIN_ADDRESS=broker.address, BASIN_SEED_FAST="1",
                   PYTHONIOENCODING="utf-8", PYTHONDONTWRITEBYTECODE="1")
        env.pop("PYTHONUNBUFFERED", None)
        if queue_name is not None:
            env["BASIN_QUEUE"] = queue_name
        self.example = example
        master, slave = pty.openpty()
        tty.setraw(slave)  # no \n -> \r\n
        try:
            self.proc = subprocess.Popen(
                [sys.executable, os.path.join(EXAMPLES, example)], env=env,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=slave,
                stderr=subprocess.PIPE, start_new_session=True)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        self.lines: List[str] = []
        self.errors: List[str] = []
        self._cond = threading.Condition()
        self._stdout_done = False
        self._readers = [threading.Thread(target=self._read_pty, args=(master,), daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for t in self._readers:
            t.start()

    def _add(self, into: List[str], line: str) -> None:
        with self._cond:
            into.append(line)
            self._cond.notify_all()

    def _read_pty(self, fd: int) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending = ""
        try:
            while True:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: every process holding the terminal is gone
                    data = b""
                pending += decoder.decode(data, final=not data)
                *lines, pending = pending.split("\n")
                for line in lines:
                    self._add(self.lines, line)
                if not data:
                    break
            if pending:
                self._add(self.lines, pending)
        finally:
            os.close(fd)
            with self._cond:
                self._stdout_done = True
                self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self._add(self.errors, raw.decode("utf-8", "replace").rstrip("\n"))

    def describe(self) -> str:
        with self._cond:
            out, err = list(self.lines), list(self.errors)
        return (f"{self.example} (exit {self.proc.poll()})\n--- stdout (last 40 lines)\n"
                + "\n".join(out[-40:]) + "\n--- stderr\n" + "\n".join(err[-40:]))

    def wait_for(self, predicate: Callable[[List[str]], bool], what: str,
                 timeout: float = TIMEOUT) -> None:
        """Waits until ``predicate(lines)`` holds; fails if stdout ends or time runs out."""
        with self._cond:
            self._cond.wait_for(lambda: predicate(self.lines) or self._stdout_done, timeout)
            ok = predicate(self.lines)
        if not ok:
            pytest.fail(f"waiting for {what}: not seen\n{self.describe()}")

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.close()

    def finish(self, timeout: float = TIMEOUT) -> int:
        """Waits for the program to end by itself; its exit status."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"did not end within {timeout} s\n{self.describe()}")
        for t in self._readers:
            t.join(30)
        return self.proc.returncode

    def stop(self) -> None:
        """Ends the whole program (main process and children), as Ctrl-C would."""
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()
        for t in self._readers:
            t.join(TIMEOUT)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)
        self.proc.wait(30)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)  # the group this test started
        except (ProcessLookupError, PermissionError):
            pass


Starter = Callable[..., Program]


@pytest.fixture
def start(broker: Broker) -> Iterator[Starter]:
    """Starts examples; whatever is left of them is killed after the test."""
    started: List[Program] = []

    def run(example: str, queue_name: Optional[str] = None, stdin: bool = False) -> Program:
        p = Program(example, broker, queue_name, stdin)
        started.append(p)
        return p

    yield run
    for p in started:
        p.kill()
        for t in p._readers:
            t.join(30)
        for stream in (p.proc.stdin, p.proc.stderr):
            if stream is not None:
                stream.close()


def run_to_end(start: Starter, example: str,
               queue_name: Optional[str] = None) -> Program:
    """Runs an example that ends by itself; it must exit 0 with no traceback."""
    p = start(example, queue_name)
    rc = p.finish()
    assert rc == 0, p.describe()
    assert not any("Traceback" in line for line in p.errors), p.describe()
    return p


def found(lines: Sequence[str], pattern: str) -> List[str]:
    """The first group (or all groups, joined by '|') of each line matching."""
    rx = re.compile(pattern)
    out = []
    for line in lines:
        m = rx.search(line)
        if m:
            out.append(m.group(1) if rx.groups == 1 else "|".join(m.groups()))
    return out


def bag(items: Sequence[str]) -> "collections.Counter[str]":
    return collections.Counter(items)


def stats(broker: Broker, name: str):  # type: ignore[no-untyped-def]
    """The queue's QueueInfo, from the broker's list (without creating it)."""
    with basin.Client(broker.address) as c:
        infos = {q.name: q for q in c.list_queues()}
    assert name in infos, f"queue {name!r} not on the broker"
    return infos[name]


def assert_drained(broker: Broker, name: str, messages: int) -> None:
    """Everything put was delivered once and finished once; nobody is left
    blocked on the queue (killed consumers' gets are gone too)."""
    s = stats(broker, name).stats
    assert (s.size, s.in_flight, s.unfinished) == (0, 0, 0), s
    assert (s.total_put, s.total_delivered, s.total_done) == (messages, messages, messages), s
    assert (s.total_redelivered, s.total_dead_lettered) == (0, 0), s
    assert wait_until(lambda: stats(broker, name).stats.waiting_getters == 0, timeout=30), \
        stats(broker, name).stats


# -- seed 000 ---------------------------------------------------------------


def test_seed000_queue_sentinel(broker: Broker, start: Starter) -> None:
    name = unique("seed000")
    p = run_to_end(start, "seed000_queue_sentinel.py", name)
    expected = [f"炒粉{i}" for i in range(5)]
    assert found(p.lines, r"厨师老刘 生产了(\S+)$") == expected, p.describe()
    # One producer, one consumer: FIFO order, each once.
    assert found(p.lines, r"食客小明 开始吃(\S+)$") == expected, p.describe()
    assert_drained(broker, name, 5 + 1)  # and the None


def test_seed000_redis_pubsub(broker: Broker, start: Starter) -> None:
    """The subscriber is live once it prints its first line (subscribe()
    returns when the broker confirmed). The publisher publishes every input
    line until "over", which it does not publish; the test then publishes
    "over" itself: messages of one subscription arrive in publish order, so
    once the subscriber printed it, everything before it has arrived. As with
    redis-py the seed compares bytes with 'over', so the subscriber does not
    stop by itself: the test stops it."""
    sub = start("seed000_redis_subscriber.py")
    sub.wait_for(lambda lines: len(lines) >= 1, "the subscriber's first line")
    assert sub.lines[0] == "Listen on channel : spub ", sub.describe()

    sent = ["hello", "你好 世界", "hello", "", "  two  spaces  ", "3.14", "cctv1"]
    pub = start("seed000_redis_publisher.py", stdin=True)
    pub.send("".join(line + "\n" for line in sent) + "over\nnever published\n")
    assert pub.finish() == 0, pub.describe()
    assert "停止发布" in "\n".join(pub.lines), pub.describe()
    assert not pub.errors, pub.describe()

    assert basin.publish("spub", "over", address=broker.address) == 1
    marker = "From spub get message : over"
    sub.wait_for(lambda lines: marker in lines, "the end marker")
    assert sub.proc.poll() is None, sub.describe()  # still listening, as with redis-py
    sub.stop()

    got = found(sub.lines, r"^From spub get message : (.*)$")
    assert got == sent + ["over"], sub.describe()
    assert sub.lines[:2] == ["Listen on channel : spub ", "Listen on channel : cctv1 "]
    assert found(sub.lines, r"^Listen on channel : (.*) $") == \
        ["spub", "cctv1"] + ["spub"] * (len(sent) + 1), sub.describe()
    assert not any("Traceback" in line for line in sub.errors), sub.describe()


# -- seed 001 ---------------------------------------------------------------


def test_seed001_model1(broker: Broker, start: Starter) -> None:
    name = unique("seed001-model1")
    p = run_to_end(start, "seed001_model1.py", name)
    expected = [f"包子{i}" for i in range(1, 11)]
    assert found(p.lines, r"^ocean生产(包子\d+)$") == expected, p.describe()
    assert found(p.lines, r"^chen吃了(.+)$") == expected, p.describe()
    assert_drained(broker, name, 10 + 1)


def test_seed001_model2(broker: Broker, start: Starter) -> None:
    name = unique("seed001-model2")
    p = run_to_end(start, "seed001_model2.py", name)
    expected = bag([f"{food}{i}" for food in ("包子", "韭菜", "酒") for i in range(1, 4)])
    assert bag(found(p.lines, r"^(?:ocean|sky|rocky)生产了(.+)$")) == expected, p.describe()
    assert bag(found(p.lines, r"^(?:nick|mac)吃了(.+)$")) == expected, p.describe()
    assert_drained(broker, name, 9 + 2)  # and a None per consumer


def test_seed001_joinable_basic(broker: Broker, start: Starter) -> None:
    name = unique("seed001-joinable-basic")
    p = run_to_end(start, "seed001_joinable_basic.py", name)
    assert p.lines == ["ocean", "can"], p.describe()
    assert_drained(broker, name, 2)


def test_seed001_joinable_daemon_consumers(broker: Broker, start: Starter) -> None:
    """join() returns once every item is task_done; the daemon consumers,
    blocked in get(), end with the main process."""
    name = unique("seed001-joinable")
    p = run_to_end(start, "seed001_joinable.py", name)
    expected = bag([f"{food}{i}" for food in ("包子", "菜", "酒") for i in range(3)])
    assert bag(found(p.lines, r"^(?:ocean|chen|nick)生产了(.+)$")) == expected, p.describe()
    # Each consumer prints before its task_done, so by join() all are printed.
    assert bag(found(p.lines, r"^(?:pocky|mac)吃了(.+)$")) == expected, p.describe()
    assert stats(broker, name).stats.unfinished == 0
    assert_drained(broker, name, 9)


# -- seed 002 ---------------------------------------------------------------


def test_seed002_requests_queue(broker: Broker, start: Starter) -> None:
    """The consumer never learns the work is over (the blog's point): the test
    stops the program once the four pages are counted. The stand-in's n-th
    page has n images, so the counts also show the order."""
    name = unique("seed002-requests")
    p = start("seed002_requests_queue.py", name)
    p.wait_for(lambda lines: len(found(lines, r"生产了第(\d+)个数据$")) == 4
               and len(found(lines, r"第(\d+)个任务获取到")) == 4, "four pages made and counted")
    p.stop()
    assert found(p.lines, r"^\d+ 生产了第(\d+)个数据$") == ["1", "2", "3", "4"], p.describe()
    assert found(p.lines, r"^ 第(\d+)个任务获取到(\d+)个img$") == \
        ["1|1", "2|2", "3|3", "4|4"], p.describe()
    assert not any("Traceback" in line for line in p.errors), p.describe()
    assert_drained(broker, name, 4)


def test_seed002_hotdog_joinable_terminate(broker: Broker, start: Starter) -> None:
    """Two producers, q.join(), then c.terminate() on the consumer blocked in get()."""
    name = unique("seed002-hotdog")
    p = run_to_end(start, "seed002_hotdog_joinable.py", name)
    expected = bag([f"{shop}的热狗{i}" for shop in ("上海分店", "北京分店") for i in range(1, 6)])
    assert bag(found(p.lines, r"^生产了 (.+)$")) == expected, p.describe()
    assert bag(found(p.lines, r"^消费了(.+)$")) == expected, p.describe()
    assert_drained(broker, name, 10)


# -- seed 003 ---------------------------------------------------------------


def test_seed003_bounded_queue3(broker: Broker, start: Starter) -> None:
    name = unique("seed003-bounded")
    p = run_to_end(start, "seed003_bounded_queue3.py", name)
    assert p.lines == ["True", "hello", "{'a': 3}", "[1, 2, 3]"], p.describe()
    assert stats(broker, name).max_size == 3
    assert_drained(broker, name, 3)
    # The blog's remarks between the blocks: a fourth put blocks until a get
    # makes room, a fourth get until a put comes (here: with timeouts).
    q = basin.Queue(name, 3, address=broker.address)
    for item in ("hello", {"a": 3}, [1, 2, 3]):
        q.put(item)
    with pytest.raises(queue.Full):
        q.put("one too many", timeout=0.2)
    assert [q.get(), q.get(), q.get()] == ["hello", {"a": 3}, [1, 2, 3]]
    with pytest.raises(queue.Empty):
        q.get(timeout=0.2)


def test_seed003_no_sentinel(broker: Broker, start: Starter) -> None:
    """The blog's first version never ends (the consumer waits on the empty
    queue): the test stops it once the ten items are eaten."""
    name = unique("seed003-no-sentinel")
    p = start("seed003_no_sentinel.py", name)
    p.wait_for(lambda lines: len(found(lines, r"^消费者吃了 ")) == 10, "ten items eaten")
    p.stop()
    expected = [f"包子 {i} " for i in range(10)]
    assert "主" in p.lines, p.describe()
    assert found(p.lines, r"^生产者生产了 (.+)$") == expected, p.describe()
    assert found(p.lines, r"^消费者吃了 (.+)$") == expected, p.describe()
    assert not any("Traceback" in line for line in p.errors), p.describe()
    assert_drained(broker, name, 10)


def test_seed003_sentinel(broker: Broker, start: Starter) -> None:
    name = unique("seed003-sentinel")
    p = run_to_end(start, "seed003_sentinel.py", name)
    expected = [f"包子 {i} " for i in range(10)]
    assert "主" in p.lines, p.describe()
    assert found(p.lines, r"^生产者生产了 (.+)$") == expected, p.describe()
    assert found(p.lines, r"^消费者吃了 (.+)$") == expected, p.describe()
    assert_drained(broker, name, 10 + 1)


def test_seed003_many_producers(broker: Broker, start: Starter) -> None:
    name = unique("seed003-many")
    p = run_to_end(start, "seed003_many_producers.py", name)
    expected = bag([f"包子 {i} " for i in range(10)] * 3)
    assert "主" in p.lines, p.describe()
    assert bag(found(p.lines, r"^生产者生产了 (.+)$")) == expected, p.describe()
    assert bag(found(p.lines, r"^消费者吃了 (.+)$")) == expected, p.describe()
    assert_drained(broker, name, 30 + 2)


# -- seed 004 ---------------------------------------------------------------


def test_seed004_redis_list_queue(broker: Broker, start: Starter) -> None:
    """The producer program and the consumers program (three processes under
    a Lock) on one queue. The consumers start once the producer reached its
    bound (it prints 长度过大睡一会 at 101 items): each reads the length once
    when it starts, and one that found it empty would keep the lock for ever
    (the seed's else branch). They poll for ever: the test stops them once
    all 300 items were printed."""
    name = unique("seed004-goods2")
    producer = start("seed004_redis_list_producer.py", name)
    producer.wait_for(lambda lines: "长度过大睡一会" in lines, "the producer's bound")
    consumers = start("seed004_redis_list_consumers.py", name)
    assert producer.finish() == 0, producer.describe()
    assert producer.lines.count("加入一个值睡一会") == 300, producer.describe()
    expected = bag([f"good1{i}" for i in range(300)])
    consumers.wait_for(lambda lines: len(found(lines, r"^(good1\d+)$")) >= 300, "300 items")
    consumers.stop()
    assert bag(found(consumers.lines, r"^(good1\d+)$")) == expected, consumers.describe()
    starts = [int(line) for line in consumers.lines if line.isdigit()]
    assert len(starts) == 3 and all(n > 0 for n in starts), consumers.describe()
    for p in (producer, consumers):
        assert not any("Traceback" in line for line in p.errors), p.describe()
    assert_drained(broker, name, 300)


# -- the ports themselves ---------------------------------------------------

# Where each example's code is in its seed: (file, [(first, last) line, ...]),
# the code only (not the sample output some blocks end with). Seed 004 lost
# its line structure in extraction, so its two examples cannot be compared.
SEED_CODE: Dict[str, Tuple[str, List[Tuple[int, int]]]] = {
    "seed000_queue_sentinel.py": ("000_88ee0c8bc8a162c5.txt", [(21, 51)]),
    "seed000_redis_publisher.py": ("000_88ee0c8bc8a162c5.txt", [(62, 74)]),
    "seed000_redis_subscriber.py": ("000_88ee0c8bc8a162c5.txt", [(77, 94)]),
    "seed001_model1.py": ("001_42a7d2a0d07a8e83.txt", [(30, 49)]),
    "seed001_model2.py": ("001_42a7d2a0d07a8e83.txt", [(76, 110)]),
    "seed001_joinable_basic.py": ("001_42a7d2a0d07a8e83.txt", [(148, 157)]),
    "seed001_joinable.py": ("001_42a7d2a0d07a8e83.txt", [(166, 208)]),
    "seed002_requests_queue.py": ("002_996207f951c90cf5.txt", [(26, 66)]),
    "seed002_hotdog_joinable.py": ("002_996207f951c90cf5.txt", [(77, 120)]),
    "seed003_bounded_queue3.py": ("003_1f0f8c216f4f78d5.txt", [(18, 26), (41, 43)]),
    "seed003_no_sentinel.py": ("003_1f0f8c216f4f78d5.txt", [(58, 93)]),
    "seed003_sentinel.py": ("003_1f0f8c216f4f78d5.txt", [(128, 169)]),
    "seed003_many_producers.py": ("003_1f0f8c216f4f78d5.txt", [(202, 250)]),
}
NOT_COMPARED = {"seed004_redis_list_producer.py", "seed004_redis_list_consumers.py"}

# Seed lines a port may drop or replace: imports and the queue's or Redis
# connection's constructor (with its continuation lines).
DROPPABLE = re.compile(r"^\s*(from|import) |Queue\(|redis\.|^\s*(port|password)=")
# Lines a port may add: imports, the basin lines (address, queue name,
# constructor, the BASIN_SEED_FAST shim), a marked fix, blank lines.
ADDABLE = re.compile(r"^\s*(from|import) |basin|BASIN_|ADDRESS|QUEUE|# added: |^\s*$")


def test_every_example_is_tested() -> None:
    examples = {os.path.basename(p) for p in glob.glob(os.path.join(EXAMPLES, "seed*.py"))}
    assert examples == set(SEED_CODE) | NOT_COMPARED
    source = open(__file__, encoding="utf-8").read()
    for example in examples:
        assert source.count(f'"{example}"') >= 2, f"{example} is not run by any test"


@pytest.mark.parametrize("example", sorted(SEED_CODE))
def test_port_changes_only_imports_and_constructors(example: str) -> None:
    seed_file, ranges = SEED_CODE[example]
    path = os.path.join(SEEDS, seed_file)
    if not os.path.exists(path):
        pytest.skip(f"{path} not here")
    seed_lines = open(path, encoding="utf-8").read().split("\n")
    seed = [seed_lines[i - 1].rstrip() for a, b in ranges for i in range(a, b + 1)]
    with open(os.path.join(EXAMPLES, example), encoding="utf-8") as f:
        port = [line.rstrip() for line in f.read().split("\n")]
    while port and port[0].startswith("# "):  # the header comment
        port.pop(0)
    while port and port[-1] == "":
        port.pop()
    bad = []
    matcher = difflib.SequenceMatcher(None, seed, port, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("delete", "replace"):
            bad += [f"- {s}" for s in seed[i1:i2] if s.strip() and not DROPPABLE.search(s)]
        if tag in ("insert", "replace"):
            bad += [f"+ {s}" for s in port[j1:j2] if not ADDABLE.search(s)]
    diff = "\n".join(difflib.unified_diff(seed, port, "seed", example, lineterm=""))
    assert not bad, "\n".join(bad) + "\n\n" + diff
