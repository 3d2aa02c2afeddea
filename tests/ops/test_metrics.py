"""/metrics against the real basind: the text format's rules, and values that
agree with what GetQueue and ListTopics say, under load."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import urllib.error
from typing import Any, Dict

import grpc
import pytest

import basin
from basin.v1 import queue_pb2, queue_pb2_grpc, topic_pb2, topic_pb2_grpc
from conftest import ROOT, Broker, fetch, wait_until
from exposition import Family, parse, value

Families = Dict[str, Family]


def scrape(broker: Broker) -> Families:
    status, headers, body = fetch(broker, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(body)


def queue_series(families: Families, name: str, queue: str) -> float:
    """The queue's sample, or -1 while a snapshot older than the queue is served."""
    try:
        return value(families, name, queue=queue)
    except KeyError:
        return -1


def test_the_exposition_follows_the_text_format(http_broker: Broker) -> None:
    q = basin.JoinableQueue("format", address=http_broker.address)
    q.put("a")
    q.get()
    q.task_done()
    basin.publish("format.topic", "x", address=http_broker.address)
    families = scrape(http_broker)
    # One of each kind the broker exports.
    assert families["basin_queue_messages_ready"].type == "gauge"
    assert families["basin_queue_put_total"].type == "counter"
    assert families["basin_rpc_duration_seconds"].type == "histogram"
    assert families["basin_rpc_calls_total"].type == "counter"
    for required in ["basin_queue_messages_in_flight", "basin_queue_messages_unfinished",
                     "basin_queue_ready_bytes", "basin_queue_waiting_getters",
                     "basin_queue_waiting_putters", "basin_queue_waiting_joiners",
                     "basin_queue_consumers", "basin_queue_delivered_total",
                     "basin_queue_done_total", "basin_queue_redelivered_total",
                     "basin_queue_dead_lettered_total", "basin_queue_rejected_total",
                     "basin_topic_subscribers", "basin_topic_published_total",
                     "basin_topic_delivered_total", "basin_topic_dropped_total",
                     "basin_memory_used_bytes", "basin_memory_limit_bytes",
                     "process_resident_memory_bytes", "process_open_fds", "process_threads",
                     "basin_uptime_seconds", "basin_build_info"]:
        assert required in families, required
    assert value(families, "basin_memory_limit_bytes") == 256 << 20
    assert value(families, "process_threads") >= 2
    assert value(families, "process_open_fds") >= 3
    assert value(families, "process_resident_memory_bytes") > 1 << 20
    ok_puts = value(families, "basin_rpc_calls_total", method="/basin.v1.QueueService/Put",
                    code="OK")
    assert ok_puts >= 1
    assert value(families, "basin_rpc_duration_seconds_count",
                 method="/basin.v1.QueueService/Put", code="OK") == ok_puts


def test_rpc_calls_are_counted_by_method_and_code(http_broker: Broker) -> None:
    before = scrape(http_broker)
    q = basin.JoinableQueue("rpc-count", address=http_broker.address)
    for i in range(7):
        q.put(i)
    with grpc.insecure_channel(http_broker.address) as channel:
        with pytest.raises(grpc.RpcError) as e:
            queue_pb2_grpc.QueueServiceStub(channel).Get(queue_pb2.GetRequest(queue="no-such"))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        # A method no service has: its name must not become a label.
        call = channel.unary_unary("/basin.v1.QueueService/Evil-" + "x" * 50)
        with pytest.raises(grpc.RpcError) as e:
            call(b"", timeout=10)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    after = scrape(http_broker)

    def calls(f: Families, method: str, code: str) -> float:
        try:
            return value(f, "basin_rpc_calls_total", method=method, code=code)
        except KeyError:
            return 0

    put = "/basin.v1.QueueService/Put"
    assert calls(after, put, "OK") - calls(before, put, "OK") == 7
    get = "/basin.v1.QueueService/Get"
    assert calls(after, get, "NOT_FOUND") - calls(before, get, "NOT_FOUND") == 1
    assert calls(after, "other", "UNIMPLEMENTED") - calls(before, "other", "UNIMPLEMENTED") == 1
    with basin.Client(http_broker.address) as client:
        client.server_info()
    assert calls(scrape(http_broker), "/basin.v1.ServerService/GetServerInfo", "OK") >= 1
    methods = {dict(labels)["method"] for _, labels in after["basin_rpc_calls_total"].samples}
    assert not any("Evil" in m for m in methods)


def test_values_agree_with_get_queue_and_list_topics_under_load(http_broker: Broker) -> None:
    address = http_broker.address
    queue = "under-load"
    q = basin.JoinableQueue(queue, 1000, address=address)
    stop = threading.Event()
    produced = threading.Event()  # the producer has stopped: the consumer may too
    errors = []

    def produce() -> None:
        try:
            n = 0
            while not stop.is_set():
                q.put_many([f"m{n + i}" for i in range(50)])
                basin.publish("load.events", "e", address=address)
                n += 50
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
        finally:
            produced.set()

    def consume() -> None:
        try:
            while not produced.is_set() or q.qsize() > 0:
                for m in q.get_many(50, timeout=1):
                    del m
                    q.task_done()
        except basin.Empty:
            pass
        except Exception as e:  # pragma: no cover
            errors.append(e)

    with grpc.insecure_channel(address) as channel:
        queues = queue_pb2_grpc.QueueServiceStub(channel)
        topics = topic_pb2_grpc.TopicServiceStub(channel)

        def stats() -> Any:
            return queues.GetQueue(queue_pb2.GetQueueRequest(name=queue)).queue.stats

        def published() -> int:
            listed = topics.ListTopics(topic_pb2.ListTopicsRequest()).topics
            return next(t.published for t in listed if t.name == "load.events")

        threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
        for t in threads:
            t.start()
        try:
            assert wait_until(lambda: stats().total_done > 500)
            # Counters only grow: a scrape between two GetQueue calls lies
            # between their values.
            for _ in range(3):
                # Scrapes come from a snapshot up to 250 ms old: wait for one
                # taken after `first`, then it must lie between first and last.
                first, first_published = stats(), published()
                scraped: Dict[str, Any] = {}

                def fresh() -> bool:
                    scraped["f"] = scrape(http_broker)
                    try:
                        topic = value(scraped["f"], "basin_topic_published_total",
                                      topic="load.events")
                    except KeyError:
                        return False
                    return (queue_series(scraped["f"], "basin_queue_done_total", queue)
                            >= first.total_done and topic >= first_published)

                assert wait_until(fresh)
                families = scraped["f"]
                last, last_published = stats(), published()
                for series, field_name in [("basin_queue_put_total", "total_put"),
                                           ("basin_queue_delivered_total", "total_delivered"),
                                           ("basin_queue_done_total", "total_done")]:
                    seen = queue_series(families, series, queue)
                    assert seen <= getattr(last, field_name), series
                seen = value(families, "basin_topic_published_total", topic="load.events")
                assert seen <= last_published
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        assert not errors, errors
        q.put("an hour from now", delay=3600)  # so that the delayed gauge is not 0
        # At rest every gauge and counter equals what GetQueue says (once the
        # snapshot is newer than the load).
        quiet = stats()
        assert wait_until(lambda: queue_series(scrape(http_broker), "basin_queue_put_total",
                                               queue) == quiet.total_put)
        families = scrape(http_broker)
        for series, field_name in [("basin_queue_messages_ready", "size"),
                                   ("basin_queue_messages_in_flight", "in_flight"),
                                   ("basin_queue_messages_delayed", "delayed"),
                                   ("basin_queue_active_groups", "active_groups"),
                                   ("basin_queue_messages_unfinished", "unfinished"),
                                   ("basin_queue_ready_bytes", "bytes"),
                                   ("basin_queue_waiting_getters", "waiting_getters"),
                                   ("basin_queue_waiting_putters", "waiting_putters"),
                                   ("basin_queue_waiting_joiners", "waiting_joiners"),
                                   ("basin_queue_put_total", "total_put"),
                                   ("basin_queue_delivered_total", "total_delivered"),
                                   ("basin_queue_done_total", "total_done"),
                                   ("basin_queue_redelivered_total", "total_redelivered"),
                                   ("basin_queue_dead_lettered_total", "total_dead_lettered"),
                                   ("basin_queue_expired_total", "total_expired"),
                                   ("basin_queue_rejected_total", "total_rejected")]:
            assert queue_series(families, series, queue) == getattr(quiet, field_name), series
        assert queue_series(families, "basin_queue_capacity_messages", queue) == 1000
        assert value(families, "basin_topic_published_total", topic="load.events") == published()


def test_consumers_and_waiters_show(http_broker: Broker) -> None:
    name = "consumers-shown"
    q = basin.JoinableQueue(name, address=http_broker.address)
    q.put_many(range(10))
    consumer = basin.Consumer(name, prefetch=4, address=http_broker.address)
    try:
        assert wait_until(lambda: queue_series(scrape(http_broker), "basin_queue_messages_in_flight",
                                               name) == 4)
        families = scrape(http_broker)
        assert queue_series(families, "basin_queue_consumers", name) == 1
        assert queue_series(families, "basin_queue_consumers_at_prefetch", name) == 1
    finally:
        consumer.close()
    waiting = basin.JoinableQueue("waiters-shown", address=http_broker.address)
    got = []
    blocked = threading.Thread(target=lambda: got.append(waiting.get(timeout=30)))
    blocked.start()
    assert wait_until(lambda: queue_series(scrape(http_broker), "basin_queue_waiting_getters",
                                           "waiters-shown") == 1)
    waiting.put("wake")
    blocked.join(30)
    assert got == ["wake"]
    assert wait_until(lambda: queue_series(scrape(http_broker), "basin_queue_waiting_getters",
                                           "waiters-shown") == 0)


def test_queues_and_topics_past_the_cap_are_summed() -> None:
    b = Broker("--http-listen", "127.0.0.1:0", "--metrics-max-queues", "3",
               "--metrics-max-topics", "2")
    try:
        for i in range(5):
            basin.JoinableQueue(f"capped-{i}", address=b.address).put_many(range(i + 1))
        for t in ["t.a", "t.b", "t.c", "t.d"]:
            basin.publish(t, "x", address=b.address)
        families = scrape(b)
        ready = {dict(labels)["queue"]: v
                 for (_, labels), v in families["basin_queue_messages_ready"].samples.items()}
        assert ready == {"capped-0": 1, "capped-1": 2, "capped-2": 3, "(other)": 4 + 5}
        assert value(families, "basin_queues") == 5
        consumer = basin.Consumer("capped-4", prefetch=1, address=b.address)
        try:
            assert wait_until(lambda: value(scrape(b), "basin_queue_consumers",
                                            queue="(other)") == 1)
            families = scrape(b)
            assert value(families, "basin_queue_consumers_at_prefetch", queue="(other)") == 1
        finally:
            consumer.close()
        published = {dict(labels)["topic"]: v
                     for (_, labels), v in families["basin_topic_published_total"].samples.items()}
        assert published == {"t.a": 1, "t.b": 1, "(other)": 2}
        assert value(families, "basin_topics") == 4
    finally:
        b.close()


def test_storage_series_of_a_durable_broker() -> None:
    data = tempfile.mkdtemp(prefix="basin-metrics-")
    b = Broker("--http-listen", "127.0.0.1:0", "--data-dir", data)
    try:
        q = basin.JoinableQueue("durable-metrics", address=b.address, durable=True)
        q.put_many(range(100))
        fetch(b, "/healthz")  # an HTTP request counted before the scrape
        families = scrape(b)
        assert value(families, "basin_storage_segments") >= 1
        assert value(families, "basin_storage_written_bytes_total") > 100
        assert value(families, "basin_storage_fsync_duration_seconds_count") >= 1
        assert "basin_storage_recovery_duration_seconds" in families
        assert value(families, "basin_queue_messages_ready", queue="durable-metrics") == 100
        # Every family served is in the metrics reference, and only those.
        with open(os.path.join(ROOT, "docs", "operations.md")) as f:
            docs = f.read()
        reference = docs[docs.index("## Metrics reference"):docs.index("### Alerts")]
        documented = set(re.findall(r"^\| `([a-z_]+)` \|", reference, re.M))
        assert documented == set(families), (documented ^ set(families))
    finally:
        b.close()
        shutil.rmtree(data, ignore_errors=True)


def test_no_storage_series_without_a_data_dir(http_broker: Broker) -> None:
    assert "basin_storage_segments" not in scrape(http_broker)


def test_http_errors_are_clear(http_broker: Broker) -> None:
    assert fetch(http_broker, "/nope")[0] == 404
    status, headers, _ = fetch(http_broker, "/metrics", method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    status, _, body = fetch(http_broker, "/api/queues/format/close", method="POST",
                            headers={"X-Basin-Action": "1"})
    assert status == 403 and "--http-admin" in body
    assert fetch(http_broker, "/healthz") == (200, fetch(http_broker, "/healthz")[1], "ok\n")
    status, headers, body = fetch(http_broker, "/healthz", method="HEAD")
    assert status == 200 and body == "" and headers["Content-Length"] == "3"  # GET's "ok\n"
    # Requests are counted by route, never by the client's own path.
    families = scrape(http_broker)
    assert value(families, "basin_http_requests_total", route="/healthz", code="200") >= 2
    assert value(families, "basin_http_requests_total", route="other", code="404") >= 1
    routes = {dict(labels)["route"] for _, labels in families["basin_http_requests_total"].samples}
    assert "/nope" not in routes


def test_oversize_and_slow_requests_do_not_stop_the_listener(http_broker: Broker) -> None:
    import socket
    host, port = http_broker.http_address.rsplit(":", 1)
    # A client that connects and says nothing holds one connection, not the thread.
    idle = socket.create_connection((host, int(port)))
    # Headers past the 8 KiB limit: refused with 400, the connection closed.
    big = socket.create_connection((host, int(port)))
    big.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    reply = big.recv(1024)
    assert reply.startswith(b"HTTP/1.1 400"), reply
    big.close()
    assert fetch(http_broker, "/healthz")[0] == 200
    # A body past 64 KiB: 400, and the listener goes on.
    big = socket.create_connection((host, int(port)))
    big.sendall(b"POST /api/queues/x/close HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" +
                b"a" * 100000)
    assert big.recv(1024).startswith(b"HTTP/1.1 400")
    big.close()
    idle.close()


def test_connections_past_the_cap_are_closed_and_the_listener_recovers() -> None:
    import socket
    b = Broker("--http-listen", "127.0.0.1:0")
    try:
        host, port = b.http_address.rsplit(":", 1)
        held = []
        for _ in range(64):
            c = socket.create_connection((host, int(port)))
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # accepted, kept alive
            assert c.recv(1024).startswith(b"HTTP/1.1 200")
            held.append(c)
        extra = socket.create_connection((host, int(port)))
        extra.settimeout(30)
        try:  # closed at accept, the 65th: no answer, whether the send or the read sees it
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert extra.recv(1024) == b""
        except (ConnectionResetError, BrokenPipeError):
            pass
        extra.close()
        for c in held:
            c.close()

        def answers() -> bool:
            # The listener learns of the closes asynchronously: until it has,
            # a new connection is still the 65th and is closed at accept.
            try:
                return fetch(b, "/healthz")[0] == 200
            except (ConnectionError, urllib.error.URLError):
                return False
        assert wait_until(answers)
    finally:
        b.close()


def test_admin_actions_refuse_a_rebound_host_name() -> None:
    b = Broker("--http-listen", "127.0.0.1:0", "--http-admin")
    try:
        basin.JoinableQueue("rebind", address=b.address)
        status, _, body = fetch(b, "/api/queues/rebind/delete", method="POST",
                                headers={"X-Basin-Action": "1", "Host": "evil.example:80"})
        assert status == 403 and "Host" in body
        status, _, _ = fetch(b, "/api/queues/rebind/close", method="POST",
                             headers={"X-Basin-Action": "1", "Host": "localhost:1"})
        assert status == 200
    finally:
        b.close()


def test_admin_actions_need_the_flag_and_the_header() -> None:
    b = Broker("--http-listen", "127.0.0.1:0", "--http-admin")
    try:
        q = basin.JoinableQueue("admin-target", address=b.address)
        q.put("x")
        status, _, body = fetch(b, "/api/queues/admin-target/close", method="POST")
        assert status == 403 and "X-Basin-Action" in body
        assert fetch(b, "/api/queues/admin-target/close", method="GET")[0] == 405
        status, _, body = fetch(b, "/api/queues/admin-target/close", method="POST",
                                headers={"X-Basin-Action": "1"})
        assert status == 200 and body == '{"already_closed":false}'
        assert q.info().stats.closed
        status, _, body = fetch(b, "/api/queues/missing/delete", method="POST",
                                headers={"X-Basin-Action": "1"})
        assert status == 404 and "missing" in body
        status, _, body = fetch(b, "/api/queues/admin-target/delete", method="POST",
                                headers={"X-Basin-Action": "1"})
        assert status == 200 and body == '{"messages_dropped":1}'
        assert fetch(b, "/api/queues/admin-target/purge", method="POST",
                     headers={"X-Basin-Action": "1"})[0] == 404
    finally:
        b.close()


def test_overview_agrees_with_get_queue(http_broker: Broker) -> None:
    import json
    q = basin.JoinableQueue("overview", 50, address=http_broker.address)
    q.put_many(range(12))
    q.get()
    def overview() -> Any:
        status, headers, body = fetch(http_broker, "/api/overview")
        assert status == 200 and headers["Content-Type"] == "application/json"
        return json.loads(body)

    assert wait_until(lambda: any(r["name"] == "overview" and r["in_flight"] == 1
                                  for r in overview()["queues"]))
    o = overview()
    row = next(r for r in o["queues"] if r["name"] == "overview")
    info = q.info()
    assert (row["ready"], row["in_flight"], row["unfinished"], row["max_size"]) == (
        info.stats.size, info.stats.in_flight, info.stats.unfinished, 50)
    assert row["put_total"] == 12 and row["delivered_total"] == 1
    assert o["memory_limit"] == 256 << 20 and o["uptime_seconds"] > 0
    assert o["admin"] is False
