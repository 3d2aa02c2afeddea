"""Limits per client: a user's message rate, a user's queue quota, calls per
connection, idle connections; and that one client's flood leaves another
client's calls working."""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any, List

import grpc
import pytest

import basin
from basin.v1 import queue_pb2, queue_pb2_grpc, server_pb2, server_pb2_grpc
from conftest import USERS, Broker, channel, metadata, token_of, users_toml, wait_until

FLOOD = ("flood-token-0123456789abcdef", 'write = ".*"\nconfigure = ".*"\nrate = 50')
QUOTA = ("quota-token-0123456789abcdef", 'configure = "mine.*"\nread = ".*"\nmax_queues = 2')


@pytest.fixture(scope="module")
def limited(tmp_path_factory: Any) -> Any:
    path = tmp_path_factory.mktemp("users") / "users.toml"
    path.write_text(users_toml({"root": USERS["root"], "flood": FLOOD, "quota": QUOTA}))
    b = Broker("--users", str(path), "--max-calls-per-connection", "8")
    yield b
    b.close()


def test_a_flooding_user_is_rate_limited_while_another_works_normally(limited: Broker) -> None:
    root = basin.Client(limited.address, token=token_of("root"))
    root.queue("flooded")
    root.queue("calm")
    flooder = basin.JoinableQueue("flooded", address=limited.address,
                                  client=basin.Client(limited.address, token=FLOOD[0]))
    stop = threading.Event()
    counts = {"ok": 0, "limited": 0}

    def flood() -> None:
        while not stop.is_set():
            try:
                flooder.put_nowait(b"x")
                counts["ok"] += 1
            except basin.RateLimited:
                counts["limited"] += 1

    threads = [threading.Thread(target=flood) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        assert wait_until(lambda: counts["limited"] > 100)
        calm = root.queue("calm")
        took: List[float] = []
        for _ in range(200):
            start = time.monotonic()
            calm.put(b"y")
            took.append(time.monotonic() - start)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert calm.qsize() == 200
    # The flooder got its rate (a burst of 50, then 50/s), no more.
    info = root.server_info()
    assert info.security.rate_limited_total >= counts["limited"] > 0
    print(f"calm puts during the flood: median {statistics.median(took) * 1e3:.2f} ms, "
          f"max {max(took) * 1e3:.2f} ms; flooder: {counts['ok']} put, "
          f"{counts['limited']} RATE_LIMITED")


def test_a_users_queue_quota(limited: Broker) -> None:
    me = basin.Client(limited.address, token=QUOTA[0])
    me.queue("mine-1")
    me.queue("mine-2")
    with pytest.raises(basin.Error) as e:
        me.queue("mine-3")
    assert e.value.reason == "TOO_MANY_QUEUES"
    me.queue("mine-1")  # attaching to one of its own is not a new queue
    me.delete_queue("mine-2")
    me.queue("mine-3")
    # A queue deleted by someone else frees the quota too.
    basin.Client(limited.address, token=token_of("root")).delete_queue("mine-3")
    me.queue("mine-4")
    assert basin.Client(limited.address, token=token_of("root")).server_info() \
        .security.queue_quota_refused_total >= 1


def test_one_connection_has_at_most_its_calls_and_others_are_not_held_up(
        limited: Broker) -> None:
    root_md = metadata(token_of("root"))
    stubs = queue_pb2_grpc.QueueServiceStub(channel(limited.address))
    stubs.CreateQueue(queue_pb2.CreateQueueRequest(name="capped-calls"), metadata=root_md,
                      timeout=10)
    # 20 blocked gets on one connection: 8 reach the broker, 12 wait in the client.
    gets = [stubs.Get.future(queue_pb2.GetRequest(queue="capped-calls"), metadata=root_md,
                             timeout=60) for _ in range(20)]
    other = queue_pb2_grpc.QueueServiceStub(channel(limited.address))

    def waiting() -> int:
        return other.GetQueue(queue_pb2.GetQueueRequest(name="capped-calls"), metadata=root_md,
                              timeout=10).queue.stats.waiting_getters
    assert wait_until(lambda: waiting() == 8)
    # Another connection is not held up by them.
    for _ in range(20):
        other.Put(queue_pb2.PutRequest(queue="capped-calls", payload=b"m"), metadata=root_md,
                  timeout=10)
    assert all(g.result().message.payload == b"m" for g in gets)
    info = server_pb2_grpc.ServerServiceStub(channel(limited.address)).GetServerInfo(
        server_pb2.GetServerInfoRequest(), metadata=root_md, timeout=10)
    assert info.limits.max_calls_per_connection == 8


def test_an_idle_connection_is_closed_and_the_client_comes_back() -> None:
    b = Broker("--max-connection-idle", "200ms")
    try:
        ch = channel(b.address)
        states: List[grpc.ChannelConnectivity] = []
        ch.subscribe(states.append, try_to_connect=False)
        stub = queue_pb2_grpc.QueueServiceStub(ch)
        stub.ListQueues(queue_pb2.ListQueuesRequest(), timeout=10)
        # The broker sends GOAWAY after 200 ms without calls: the channel idles.
        assert wait_until(lambda: grpc.ChannelConnectivity.READY in states and
                          states[-1] == grpc.ChannelConnectivity.IDLE)
        stub.ListQueues(queue_pb2.ListQueuesRequest(), timeout=10)
        ch.unsubscribe(states.append)
    finally:
        b.close()


def test_limits_and_refusals_show_in_server_info(limited: Broker) -> None:
    info = basin.Client(limited.address, token=token_of("root")).server_info()
    assert info.security.users == 3
    assert info.security.transport == "plaintext"
    settings = {s.name: s.value for s in info.settings}
    assert settings["max-calls-per-connection"] == "8"
    with pytest.raises(basin.PermissionDenied):
        basin.Client(limited.address, token=FLOOD[0]).server_info()
