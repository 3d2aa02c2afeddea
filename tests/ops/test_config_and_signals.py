"""basind's configuration (flags, BASIN_* environment, the --config file),
GetServerInfo, and its signals: SIGTERM drains, SIGHUP reopens the log file."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from typing import Any, Dict, Iterator, List

import grpc
import pytest

import basin
from basin.v1 import queue_pb2, queue_pb2_grpc, topic_pb2, topic_pb2_grpc
from conftest import BASIND, ROOT, Broker, wait_until


@pytest.fixture
def workdir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="basin-ops-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def write(path: str, text: str) -> str:
    with open(path, "w") as f:
        f.write(text)
    return path


def refused(*args: str, env: Dict[str, str] | None = None) -> str:
    """Runs basind expecting a start-up refusal (exit 2); returns stderr."""
    r = subprocess.run([BASIND, "--listen", "127.0.0.1:0", *args], capture_output=True, text=True,
                       timeout=30, env={**os.environ, **(env or {})})
    assert r.returncode == 2, (r.returncode, r.stderr)
    return r.stderr


def settings(address: str) -> Dict[str, Any]:
    with basin.Client(address) as client:
        info = client.server_info()
    return {s.name: (s.value, s.source) for s in info.settings}


class HeldDrain:
    """A Consume stream that never sends its first request: the one call a
    drain cannot end, so it waits on it until the grace runs out (or the
    client lets go). docs/operations.md, "Stopping"."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.release = threading.Event()
        stub = queue_pb2_grpc.QueueServiceStub(self.channel)

        def nothing() -> Iterator[Any]:
            self.release.wait(120)
            return
            yield  # a generator that sends nothing

        self.call = stub.Consume(nothing())
        # A unary call on the same connection after the stream's: once it is
        # answered, the broker has read the stream's start.
        stub.ListQueues(queue_pb2.ListQueuesRequest(), timeout=10)

    def let_go(self) -> None:
        self.call.cancel()
        self.release.set()
        self.channel.close()


def fetch_status(http_address: str, path: str) -> int:
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://{http_address}{path}", timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def memory_used(address: str) -> int:
    with basin.Client(address) as client:
        return int(client.server_info().limits.memory_used_bytes)


# --- The config file ---------------------------------------------------------


def test_the_file_sets_flags_and_declares_queues_and_bindings(workdir: str) -> None:
    path = write(os.path.join(workdir, "basin.toml"), """\
# a comment
max-message-bytes = "64KiB"
max-queues = 500
http-admin = false

[[queues]]
name = "jobs.dlq"

[[queues]]
name = "jobs"
max-size = 100
max-deliveries = 3
dead-letter-queue = "jobs.dlq"
visibility-timeout = "10s"

[[bindings]]
pattern = "orders.#"
queue = "jobs"
""")
    b = Broker("--config", path)
    try:
        with basin.Client(b.address) as client:
            queues = {q.name: q for q in client.list_queues()}
            assert set(queues) == {"jobs", "jobs.dlq"}
            jobs = queues["jobs"]
            assert jobs.max_size == 100 and jobs.options.max_deliveries == 3
            assert jobs.options.dead_letter_queue == "jobs.dlq"
            assert jobs.options.visibility_timeout.seconds == 10
            assert list(jobs.bindings) == ["orders.#"]
            client.publish("orders.eu", "o-1")
            info = client.server_info()
        assert info.limits.max_message_bytes == 64 << 10 and info.limits.max_queues == 500
        assert info.config_file == path
        s = {x.name: (x.value, x.source) for x in info.settings}
        assert s["max-message-bytes"] == ("64KiB", f"{path}:2")
        assert s["max-queues"] == ("500", f"{path}:3")
        assert s["max-wait"] == ("60s", "default")
        # A restart with the same file changes nothing: the queue keeps its message.
        b.restart()
        with basin.Client(b.address) as client:
            assert {q.name for q in client.list_queues()} == {"jobs", "jobs.dlq"}
    finally:
        b.close()


def test_a_restart_keeps_durable_declared_queues_and_their_messages(workdir: str) -> None:
    path = write(os.path.join(workdir, "basin.toml"), f"""\
data-dir = "{workdir}/data"

[[queues]]
name = "kept"
durable = true
max-size = 10
""")
    b = Broker("--config", path)
    try:
        q = basin.JoinableQueue("kept", 10, address=b.address, durable=True)
        q.put("survives")
        b.restart()
        # A connection of its own: the shared one broke with the old process.
        with basin.Client(b.address) as client:
            assert client.queue("kept", 10, durable=True).get(timeout=10) == "survives"
    finally:
        b.close()


def test_precedence_is_flag_then_environment_then_file(workdir: str) -> None:
    path = write(os.path.join(workdir, "basin.toml"),
                 'max-queues = 100\nmax-wait = "5s"\nmax-bindings = 300\n')
    b = Broker("--config", path, "--max-queues", "200")
    os.environ["BASIN_MAX_WAIT"] = "7s"
    try:
        b.restart()
        s = settings(b.address)
        assert s["max-queues"] == ("200", "flag")
        assert s["max-wait"] == ("7s", "env BASIN_MAX_WAIT")
        assert s["max-bindings"] == ("300", f"{path}:3")
        assert s["max-tracked-topics"] == ("100000", "default")
    finally:
        del os.environ["BASIN_MAX_WAIT"]
        b.close()


def test_basin_config_names_the_file_too(workdir: str) -> None:
    path = write(os.path.join(workdir, "basin.toml"), 'max-queues = 123\n')
    os.environ["BASIN_CONFIG"] = path
    try:
        b = Broker()
        try:
            assert settings(b.address)["max-queues"] == ("123", f"{path}:1")
        finally:
            b.close()
    finally:
        del os.environ["BASIN_CONFIG"]


@pytest.mark.parametrize("text, expected", [
    ('max-memroy = "1GiB"\n', r"basin.toml:1: unknown key 'max-memroy'"),
    ('listen = "127.0.0.1:0"\n\nmax-wait = "soon"\n',
     r"invalid value 'soon' for max-wait \(.*basin.toml:3\): not a duration"),
    ('max-memory = "1000"\n', r"invalid value '1000' for max-memory \(.*basin.toml:1\): at least 1MiB"),
    ('max-queues = -5\n', r"basin.toml:1: 'max-queues' must not be negative"),
    ('max-queues = [1, 2]\n', r"basin.toml:1: 'max-queues' must be a string, a number or a boolean"),
    ('[[queues]]\nname = "q"\ncolour = "red"\n', r"basin.toml:3: unknown key 'queues.colour'"),
    ('[[queues]]\nmax-size = 3\n', r"basin.toml:1: a \[\[queues\]\] entry needs a name"),
    ('[[queues]]\nname = "q"\nmax-size = "big"\n',
     r"basin.toml:3: invalid value 'big' for queues.max-size"),
    ('[[bindings]]\nqueue = "q"\n', r"basin.toml:1: a \[\[bindings\]\] entry needs a pattern"),
    ('max-queues = 1\nmax-queues = 2\n', r"basin.toml"),  # TOML forbids a key twice
    ('this is not toml\n', r"basin.toml"),
])
def test_a_bad_file_stops_start_up_naming_the_key_and_line(workdir: str, text: str,
                                                          expected: str) -> None:
    path = write(os.path.join(workdir, "basin.toml"), text)
    err = refused("--config", path)
    assert re.search(expected, err), err


def test_a_missing_file_stops_start_up(workdir: str) -> None:
    err = refused("--config", os.path.join(workdir, "nope.toml"))
    assert "cannot read" in err and "nope.toml" in err


def test_bad_flag_and_environment_values_name_their_source() -> None:
    assert "invalid value 'x' for --max-queues: not a whole number" in refused("--max-queues", "x")
    err = refused(env={"BASIN_FSYNC": "sometimes"})
    assert "invalid value 'sometimes' for BASIN_FSYNC: use always, batch or never" in err
    assert "invalid value '0' for --max-queues" in refused("--max-queues", "0")
    assert "not host:port" in refused("--http-listen", "localhost")
    # Sizes are whole numbers of a unit: no sign, nothing that wraps.
    assert "invalid value '-1' for --max-memory" in refused("--max-memory", "-1")
    assert "invalid value '99999999999G'" in refused("--max-subscriber-buffer-bytes",
                                                    "99999999999G")
    assert "invalid value 'inf' for --max-wait" in refused("--max-wait", "inf")


def test_http_listen_takes_a_host_name() -> None:
    b = Broker("--http-listen", "localhost:0")
    try:
        assert b.http_address.startswith("127.0.0.1:") or b.http_address.startswith("[::1]:")
        assert fetch_status(b.http_address, "/healthz") == 200
    finally:
        b.close()


def test_a_declared_queue_that_exists_with_other_settings_stops_start_up(workdir: str) -> None:
    data = os.path.join(workdir, "data")
    b = Broker("--data-dir", data)
    basin.JoinableQueue("clash", 5, address=b.address, durable=True).put(1)
    b.close()
    path = write(os.path.join(workdir, "basin.toml"),
                 f'data-dir = "{data}"\n\n[[queues]]\nname = "clash"\nmax-size = 6\ndurable = true\n')
    r = subprocess.run([BASIND, "--listen", "127.0.0.1:0", "--config", path], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1
    assert re.search(r"basin.toml:3: cannot declare queue 'clash': .*different settings", r.stderr), \
        r.stderr


def test_help_and_reference_come_from_the_flag_table() -> None:
    help_text = subprocess.run([BASIND, "--help"], capture_output=True, text=True).stdout
    reference = subprocess.run([BASIND, "--config-reference"], capture_output=True,
                               text=True).stdout
    flags = re.findall(r"^\| `--([a-z-]+)` \| `(BASIN_[A-Z_]+)` \|", reference, re.M)
    assert len(flags) >= 30
    for flag, env in flags:
        assert f"--{flag} " in help_text, flag
        assert env == "BASIN_" + flag.upper().replace("-", "_")


def test_the_docs_reference_is_the_one_basind_prints() -> None:
    """docs/operations.md holds `basind --config-reference` between markers:
    regenerate it with scripts/gen_config_reference.sh when a flag changes."""
    reference = subprocess.run([BASIND, "--config-reference"], capture_output=True,
                               text=True).stdout
    with open(os.path.join(ROOT, "docs", "operations.md")) as f:
        docs = f.read()
    begin, end = "<!-- config-reference: begin -->\n", "<!-- config-reference: end -->"
    assert begin in docs and end in docs
    in_docs = docs[docs.index(begin) + len(begin):docs.index(end)]
    assert in_docs == reference


# --- Signals -------------------------------------------------------------------


def test_sigterm_answers_blocked_calls_and_streams_then_exits_0(workdir: str) -> None:
    b = Broker("--shutdown-grace", "20s")
    address = b.address
    q = basin.JoinableQueue("drain", 1, address=address)
    q.put("fills it")
    outcomes: Dict[str, Any] = {}

    def blocked_put() -> None:
        try:
            q.put("waits for room", timeout=60)
            outcomes["put"] = "ok"
        except basin.Error as e:
            outcomes["put"] = e

    waiting = basin.JoinableQueue("drain-empty", address=address)

    def blocked_get() -> None:
        try:
            outcomes["get"] = waiting.get(timeout=60)
        except basin.Error as e:
            outcomes["get"] = e

    channel = grpc.insecure_channel(address)
    stub = queue_pb2_grpc.QueueServiceStub(channel)
    # An idle Produce stream (nothing sent after the first batch) and a
    # Consume stream on an empty queue: the broker must end both.
    produce_requests: List[Any] = [queue_pb2.ProduceRequest(
        queue="drain-other", batch_id=1, messages=[queue_pb2.PutMessage(payload=b"x")])]
    stub.CreateQueue(queue_pb2.CreateQueueRequest(name="drain-other"))
    release = threading.Event()

    def requests(first: Any) -> Iterator[Any]:
        yield first
        release.wait(60)  # keeps the stream open (a half-close would end it)

    produce = stub.Produce(requests(produce_requests[0]))
    consume = stub.Consume(requests(queue_pb2.ConsumeRequest(queue="drain-empty", prefetch=1)))
    subscribe = topic_pb2_grpc.TopicServiceStub(channel).Subscribe(
        topic_pb2.SubscribeRequest(topics=["drain.topic"]))
    next(subscribe)  # "subscribed": the subscription is live
    threads = [threading.Thread(target=blocked_put), threading.Thread(target=blocked_get)]
    for t in threads:
        t.start()
    assert wait_until(lambda: q.info().stats.waiting_putters == 1 and
                      waiting.info().stats.waiting_getters == 1)
    next(produce)  # the first batch's confirm: the stream is open
    started = time.monotonic()
    assert b.proc is not None
    b.proc.send_signal(signal.SIGTERM)
    assert b.proc.wait(30) == 0
    took = time.monotonic() - started
    for t in threads:
        t.join(30)
    assert isinstance(outcomes["put"], basin.Error) and "shutting down" in str(outcomes["put"])
    assert isinstance(outcomes["get"], basin.Error) and "shutting down" in str(outcomes["get"])
    for name, stream in (("produce", produce), ("consume", consume), ("subscribe", subscribe)):
        with pytest.raises(grpc.RpcError) as e:
            for _ in stream:
                pass
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE, (name, e.value)
    release.set()
    channel.close()
    # Well within the 20 s grace: nothing was left running.
    assert took < 10, took
    b.proc = None
    b.close()


def test_sigterm_lets_a_call_in_progress_finish(workdir: str) -> None:
    """A durable put waits for its fsync round (--fsync-interval 3s after an
    earlier one): SIGTERM during that wait still answers it OK, and the
    message is there after a restart."""
    data = os.path.join(workdir, "data")
    b = Broker("--data-dir", data, "--fsync-interval", "3s", "--shutdown-grace", "20s")
    q = basin.JoinableQueue("in-progress", address=b.address, durable=True)
    q.put("first")  # a sync round now: the next put waits up to 3 s for its own
    before = memory_used(b.address)
    result: Dict[str, Any] = {}
    t = threading.Thread(target=lambda: result.update(id=q.put("second")))
    t.start()
    # Admitted (its bytes reserved), waiting for the disk: its answer takes ~3 s.
    assert wait_until(lambda: memory_used(b.address) > before)
    assert t.is_alive()
    assert b.proc is not None
    b.proc.send_signal(signal.SIGTERM)
    assert b.proc.wait(30) == 0
    t.join(30)
    assert "id" in result and not isinstance(result.get("id"), Exception)
    b.proc = None
    b.start()
    try:
        with basin.Client(b.address) as client:
            assert client.queue("in-progress", durable=True).qsize() == 2
    finally:
        b.close()


def test_work_after_sigterm_is_refused_but_acks_are_taken(workdir: str) -> None:
    b = Broker("--data-dir", os.path.join(workdir, "data"), "--shutdown-grace", "20s",
               "--http-listen", "127.0.0.1:0")
    q = basin.JoinableQueue("late", address=b.address, durable=True)
    assert fetch_status(b.http_address, "/healthz") == 200
    q.put("a")
    q.put("b")
    m = q.get_message(timeout=10)
    probe = basin.JoinableQueue("probe", address=b.address)
    held = HeldDrain(b.address)
    assert b.proc is not None
    b.proc.send_signal(signal.SIGTERM)
    # While the drain waits on the held stream: a Get on an empty queue says
    # "shutting down" rather than "empty" once it has begun...

    def draining() -> bool:
        try:
            probe.get(timeout=0)
        except basin.Empty:
            return False
        except basin.Error as e:
            return "shutting down" in str(e)
        return False

    assert wait_until(draining)
    # ...new puts are refused, as is a Produce stream opened now,
    with pytest.raises(basin.Error, match="shutting down"):
        q.put("refused")
    with grpc.insecure_channel(b.address) as channel:
        late_produce = queue_pb2_grpc.QueueServiceStub(channel).Produce(iter([
            queue_pb2.ProduceRequest(queue="late", batch_id=1,
                                     messages=[queue_pb2.PutMessage(payload=b"x")])]))
        with pytest.raises(grpc.RpcError) as e:
            list(late_produce)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        # ...the health service says NOT_SERVING, so probes stop sending work,
        check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                    request_serializer=lambda _: b"",
                                    response_deserializer=lambda raw: raw)
        assert check(None, timeout=10) == b"\x08\x02"  # status: NOT_SERVING (2)
    # ...and /healthz says so too,
    assert fetch_status(b.http_address, "/healthz") == 503
    # ...while work in hand can still be finished.
    m.task_done()
    started = time.monotonic()
    held.let_go()  # the last call in progress ends: the broker exits at once
    assert b.proc.wait(30) == 0
    assert time.monotonic() - started < 10
    b.proc = None
    b.start()
    try:
        with basin.Client(b.address) as client:
            q = client.queue("late", durable=True)
            assert [q.get(timeout=5) for _ in range(q.qsize())] == ["b"]
    finally:
        b.close()


def test_calls_past_the_grace_are_cut_off(workdir: str) -> None:
    log = os.path.join(workdir, "basind.log")
    b = Broker("--shutdown-grace", "300ms", "--log-file", log, "--log-level", "info")
    held = HeldDrain(b.address)
    started = time.monotonic()
    assert b.proc is not None
    b.proc.send_signal(signal.SIGTERM)
    assert b.proc.wait(30) == 0
    took = time.monotonic() - started
    b.proc = None
    held.let_go()
    b.close()
    assert 0.3 <= took < 5, took
    assert "1 calls still running after the grace were cancelled" in open(log).read()


def test_sighup_reopens_the_log_file(workdir: str) -> None:
    log = os.path.join(workdir, "basind.log")
    b = Broker("--log-file", log, "--log-level", "info")
    try:
        assert wait_until(lambda: os.path.exists(log) and "listening" in open(log).read())
        os.rename(log, log + ".1")
        assert b.proc is not None
        b.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: os.path.exists(log) and "reopened" in open(log).read())
        with grpc.insecure_channel(b.address) as channel:
            stub = queue_pb2_grpc.QueueServiceStub(channel)
            stub.CreateQueue(queue_pb2.CreateQueueRequest(name="after-hup"))
            stub.CloseQueue(queue_pb2.CloseQueueRequest(queue="after-hup"))
        b.proc.send_signal(signal.SIGTERM)
        assert b.proc.wait(30) == 0
        b.proc = None
        rotated, fresh = open(log + ".1").read(), open(log).read()
        assert "listening" in rotated and "stopped" not in rotated
        assert "closed queue 'after-hup'" in fresh and "stopped" in fresh
    finally:
        b.close()


def test_an_unwritable_log_file_stops_start_up(workdir: str) -> None:
    # Under a regular file: no directory can be made there.
    blocker = write(os.path.join(workdir, "a-file"), "")
    err = refused("--log-file", os.path.join(blocker, "basind.log"))
    assert "cannot open --log-file" in err
