"""Every RPC, streams included, called with no token, a bad token, a user
without the permission and a user with it: the status, that a refusal changes
nothing, and that a refusal is the same whether or not the object exists.
The table (RPCS) is printed into docs/security.md; a test keeps them equal."""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import grpc
import pytest
from google.protobuf import duration_pb2

import basin
from basin.v1 import (queue_pb2, queue_pb2_grpc, server_pb2, server_pb2_grpc, topic_pb2,
                      topic_pb2_grpc)
from conftest import ROOT, USERS, Broker, channel, metadata, token_of, users_toml, wait_until

Md = Sequence[Tuple[str, str]]


class Stubs:
    def __init__(self, ch: grpc.Channel) -> None:
        self.queues = queue_pb2_grpc.QueueServiceStub(ch)
        self.topics = topic_pb2_grpc.TopicServiceStub(ch)
        self.server = server_pb2_grpc.ServerServiceStub(ch)
        self.health = ch.unary_unary("/grpc.health.v1.Health/Check",
                                     request_serializer=lambda _: b"",
                                     response_deserializer=lambda b: b)


@dataclass
class Rpc:
    name: str
    needs: str  # as docs/security.md says it
    allowed: str  # a user that may
    denied: Optional[str]  # a user that may not (None: every user may)
    # call(stubs, metadata, object, prepared): raises grpc.RpcError on refusal
    call: Callable[[Stubs, Md, str, Dict[str, Any]], Any]
    # prepare(root stubs, object) -> what call needs (e.g. a delivery tag)
    prepare: Callable[[Stubs, str], Dict[str, Any]] = lambda s, o: {}
    kind: str = "queue"  # what the object names: queue, topic, or "-" for none


T = 10  # seconds: every call has a deadline


def q(s: Stubs) -> Any:
    return s.queues


def create(s: Stubs, md: Md, o: str, p: Dict[str, Any]) -> Any:
    return q(s).CreateQueue(queue_pb2.CreateQueueRequest(name=o), metadata=md, timeout=T)


def with_message(s: Stubs, o: str) -> Dict[str, Any]:
    root = metadata(token_of("root"))
    s.queues.CreateQueue(queue_pb2.CreateQueueRequest(name=o), metadata=root, timeout=T)
    s.queues.Put(queue_pb2.PutRequest(queue=o, payload=b"m"), metadata=root, timeout=T)
    return {}


def with_delivery(s: Stubs, o: str) -> Dict[str, Any]:
    with_message(s, o)
    got = s.queues.Get(queue_pb2.GetRequest(queue=o), metadata=metadata(token_of("root")),
                       timeout=T)
    return {"tag": got.delivery_tag}


def existing(s: Stubs, o: str) -> Dict[str, Any]:
    s.queues.CreateQueue(queue_pb2.CreateQueueRequest(name=o),
                         metadata=metadata(token_of("root")), timeout=T)
    return {}


def bound(s: Stubs, o: str) -> Dict[str, Any]:
    existing(s, o)
    s.topics.BindQueue(topic_pb2.BindQueueRequest(topic_pattern="news." + o, queue=o),
                       metadata=metadata(token_of("root")), timeout=T)
    return {}


def produce(s: Stubs, md: Md, o: str, p: Dict[str, Any]) -> Any:
    req = queue_pb2.ProduceRequest(queue=o, batch_id=1,
                                   messages=[queue_pb2.PutMessage(payload=b"p")])
    return list(q(s).Produce(iter([req]), metadata=md, timeout=T))


def publish_stream(s: Stubs, md: Md, o: str, p: Dict[str, Any]) -> Any:
    req = topic_pb2.PublishStreamRequest(batch_id=1,
                                         messages=[topic_pb2.PublishRequest(topic=o, payload=b"p")])
    return list(s.topics.PublishStream(iter([req]), metadata=md, timeout=T))


def first_of(call: Any) -> Any:
    try:
        return next(call)
    finally:
        call.cancel()


def consume(s: Stubs, md: Md, o: str, p: Dict[str, Any]) -> Any:
    def requests() -> Iterator[queue_pb2.ConsumeRequest]:
        yield queue_pb2.ConsumeRequest(queue=o, prefetch=1)
        time.sleep(T)  # held open until the first response is read and the call cancelled
    return first_of(q(s).Consume(requests(), metadata=md, timeout=T))


def subscribe(s: Stubs, md: Md, o: str, p: Dict[str, Any]) -> Any:
    return first_of(s.topics.Subscribe(topic_pb2.SubscribeRequest(topics=[o]), metadata=md,
                                       timeout=T))


def bind(s: Stubs, md: Md, o: str, p: Dict[str, Any]) -> Any:
    return s.topics.BindQueue(topic_pb2.BindQueueRequest(topic_pattern="news.#", queue=o),
                              metadata=md, timeout=T)


def unbind(s: Stubs, md: Md, o: str, p: Dict[str, Any]) -> Any:
    return s.topics.UnbindQueue(topic_pb2.UnbindQueueRequest(topic_pattern="news." + o, queue=o),
                                metadata=md, timeout=T)


RPCS: List[Rpc] = [
    Rpc("QueueService/CreateQueue", "configure on the queue (any permission on it: attach to "
        "it as it is); also write on its dead-letter queue", "configurer", "nobody", create),
    Rpc("QueueService/GetQueue", "any permission on the queue", "reader", "nobody",
        lambda s, md, o, p: q(s).GetQueue(queue_pb2.GetQueueRequest(name=o), metadata=md,
                                          timeout=T), existing),
    Rpc("QueueService/ListQueues", "a user; lists the queues it has any permission on (admin: "
        "all)", "reader", None,
        lambda s, md, o, p: q(s).ListQueues(queue_pb2.ListQueuesRequest(), metadata=md,
                                            timeout=T), kind="-"),
    Rpc("QueueService/DeleteQueue", "configure", "configurer", "nobody",
        lambda s, md, o, p: q(s).DeleteQueue(queue_pb2.DeleteQueueRequest(name=o), metadata=md,
                                             timeout=T), existing),
    Rpc("QueueService/CloseQueue", "configure", "configurer", "nobody",
        lambda s, md, o, p: q(s).CloseQueue(queue_pb2.CloseQueueRequest(queue=o), metadata=md,
                                            timeout=T), existing),
    Rpc("QueueService/Put", "write", "writer", "reader",
        lambda s, md, o, p: q(s).Put(queue_pb2.PutRequest(queue=o, payload=b"x"), metadata=md,
                                     timeout=T), existing),
    Rpc("QueueService/Get", "read", "reader", "writer",
        lambda s, md, o, p: q(s).Get(queue_pb2.GetRequest(queue=o), metadata=md, timeout=T),
        with_message),
    Rpc("QueueService/TaskDone", "read", "reader", "writer",
        lambda s, md, o, p: q(s).TaskDone(
            queue_pb2.TaskDoneRequest(queue=o, delivery_tag=p.get("tag", "1.1.1")), metadata=md,
            timeout=T), with_delivery),
    Rpc("QueueService/ExtendLease", "read", "reader", "writer",
        lambda s, md, o, p: q(s).ExtendLease(
            queue_pb2.ExtendLeaseRequest(queue=o, delivery_tag=p.get("tag", "1.1.1"),
                                         duration=duration_pb2.Duration(seconds=5)),
            metadata=md, timeout=T), with_delivery),
    Rpc("QueueService/Release", "read", "reader", "writer",
        lambda s, md, o, p: q(s).Release(
            queue_pb2.ReleaseRequest(queue=o, delivery_tag=p.get("tag", "1.1.1")), metadata=md,
            timeout=T), with_delivery),
    Rpc("QueueService/Join", "read", "reader", "writer",
        lambda s, md, o, p: q(s).Join(queue_pb2.JoinRequest(queue=o), metadata=md, timeout=T),
        existing),
    Rpc("QueueService/Produce", "write (checked at the first request)", "writer", "reader",
        produce, existing),
    Rpc("QueueService/Consume", "read (checked at the first request)", "reader", "writer",
        consume, with_message),
    Rpc("TopicService/Publish", "write on the topic", "writer", "reader",
        lambda s, md, o, p: s.topics.Publish(topic_pb2.PublishRequest(topic=o, payload=b"x"),
                                             metadata=md, timeout=T), kind="topic"),
    Rpc("TopicService/PublishStream", "write on every topic of each batch (checked at each "
        "batch; the rate is spent per batch)", "writer", "reader", publish_stream, kind="topic"),
    Rpc("TopicService/Subscribe", "read on every topic and pattern named", "reader", "writer",
        subscribe, kind="topic"),
    Rpc("TopicService/BindQueue", "configure and write on the queue, read and write on the "
        "topic pattern", "root", "configurer", bind, existing),
    Rpc("TopicService/UnbindQueue", "configure and write on the queue, read and write on the "
        "topic pattern", "root", "configurer", unbind, bound),
    Rpc("TopicService/ListTopics", "a user; lists topics and bindings (by their queue) it has "
        "any permission on (admin: all)", "reader", None,
        lambda s, md, o, p: s.topics.ListTopics(topic_pb2.ListTopicsRequest(), metadata=md,
                                                timeout=T), kind="-"),
    Rpc("ServerService/GetServerInfo", "the admin tag", "admin", "reader",
        lambda s, md, o, p: s.server.GetServerInfo(server_pb2.GetServerInfoRequest(),
                                                   metadata=md, timeout=T), kind="-"),
]


def table_markdown() -> str:
    lines = ["| RPC | needs | no or bad token | a user without it |", "|---|---|---|---|"]
    for r in RPCS:
        denied = "`PERMISSION_DENIED`" if r.denied else "— (filtered)"
        lines.append(f"| `basin.v1.{r.name}` | {r.needs} | `UNAUTHENTICATED` | {denied} |")
    lines.append("| `grpc.health.v1.Health/*`, `grpc.reflection.v1alpha.ServerReflection/*` | "
                 "nothing: open to all | served | served |")
    return "\n".join(lines) + "\n"


def state(s: Stubs, prefix: str) -> Any:
    """What a refusal must leave unchanged, as root sees it: the queues,
    bindings and topics whose names start with the test's prefix (others
    may still be settling from earlier tests, such as a cancelled Consume's
    deliveries going back)."""
    root = metadata(token_of("root"))
    queues = s.queues.ListQueues(queue_pb2.ListQueuesRequest(), metadata=root, timeout=T)
    topics = s.topics.ListTopics(topic_pb2.ListTopicsRequest(), metadata=root, timeout=T)
    return (sorted(x.SerializeToString(deterministic=True) for x in queues.queues
                   if x.name.startswith(prefix)),
            sorted((b.topic_pattern, b.queue) for b in topics.bindings
                   if b.queue.startswith(prefix)),
            sorted((t.name, t.published) for t in topics.topics if t.name.startswith(prefix)))


@pytest.fixture(scope="module")
def secured(users_file: str) -> Iterator[Tuple[Broker, Stubs]]:
    b = Broker("--users", users_file)
    yield b, Stubs(channel(b.address))
    b.close()


def code_of(call: Callable[[], Any]) -> Tuple[grpc.StatusCode, str]:
    try:
        call()
    except grpc.RpcError as e:
        return e.code(), e.details() or ""
    return grpc.StatusCode.OK, ""


def ids(r: Rpc) -> str:
    return r.name.split("/")[1]


@pytest.mark.parametrize("rpc", RPCS, ids=ids)
def test_every_rpc_refuses_the_unauthenticated_and_the_unpermitted(
        secured: Tuple[Broker, Stubs], rpc: Rpc) -> None:
    _, s = secured
    n = ids(rpc).lower()
    for case, md in [("none", metadata(None)), ("bad", metadata("not-a-token-of-anyone")),
                     ("malformed", [("authorization", "Basic dXNlcjpwYXNz")])]:
        obj = f"{n}-{case}"
        prepared = rpc.prepare(s, obj) if rpc.kind == "queue" else {}
        before = state(s, n)
        code, _ = code_of(lambda: rpc.call(s, md, obj, prepared))
        assert code == grpc.StatusCode.UNAUTHENTICATED, (rpc.name, case, code)
        assert state(s, n) == before, (rpc.name, case)
    if rpc.denied is not None:
        answers = []
        for exists in (True, False):
            obj = f"{n}-denied-{'there' if exists else 'never'}"
            prepared = rpc.prepare(s, obj) if exists and rpc.kind == "queue" else {}
            before = state(s, n)
            code, details = code_of(lambda: rpc.call(s, metadata(token_of(rpc.denied)), obj,
                                                     prepared))
            assert code == grpc.StatusCode.PERMISSION_DENIED, (rpc.name, exists, code, details)
            assert state(s, n) == before, (rpc.name, exists)
            answers.append((code, details.replace(obj, "NAME")))
        # The same answer whether or not the object exists: nothing leaks.
        assert answers[0] == answers[1], answers
    obj = f"{n}-allowed"
    prepared = rpc.prepare(s, obj) if rpc.kind == "queue" else {}
    code, details = code_of(lambda: rpc.call(s, metadata(token_of(rpc.allowed)), obj, prepared))
    assert code == grpc.StatusCode.OK, (rpc.name, code, details)


def test_health_and_reflection_stay_open(secured: Tuple[Broker, Stubs]) -> None:
    b, s = secured
    assert s.health(None, timeout=T) == b"\x08\x01"  # SERVING
    ch = channel(b.address)
    reflect = ch.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=lambda x: x, response_deserializer=lambda x: x)
    # list_services = "" (field 7)
    answer = next(reflect(iter([b"\x3a\x00"]), timeout=T))
    assert b"basin.v1.QueueService" in answer


def test_listings_show_only_what_the_user_may_see(secured: Tuple[Broker, Stubs]) -> None:
    _, s = secured
    existing(s, "elsewhere")
    existing(s, "hidden-from-nobody")
    s.topics.BindQueue(topic_pb2.BindQueueRequest(topic_pattern="x.#", queue="hidden-from-nobody"),
                       metadata=metadata(token_of("root")), timeout=T)
    mine = s.queues.ListQueues(queue_pb2.ListQueuesRequest(),
                               metadata=metadata(token_of("nobody")), timeout=T)
    assert [x.name for x in mine.queues] == ["elsewhere"]
    topics = s.topics.ListTopics(topic_pb2.ListTopicsRequest(),
                                 metadata=metadata(token_of("nobody")), timeout=T)
    assert all(b.queue == "elsewhere" for b in topics.bindings)
    every = s.queues.ListQueues(queue_pb2.ListQueuesRequest(),
                                metadata=metadata(token_of("admin")), timeout=T)
    assert {"elsewhere", "hidden-from-nobody"} <= {x.name for x in every.queues}


def test_attaching_needs_a_permission_and_creating_needs_configure(
        secured: Tuple[Broker, Stubs]) -> None:
    b, s = secured
    existing(s, "attach-me")
    # The Python SDK's constructor attaches through CreateQueue.
    reader = basin.Client(b.address, token=token_of("reader"))
    assert reader.queue("attach-me").qsize() == 0
    with pytest.raises(basin.PermissionDenied):
        reader.queue("never-made")
    with pytest.raises(basin.PermissionDenied):
        basin.Client(b.address, token=token_of("nobody")).queue("attach-me")
    with pytest.raises(basin.Unauthenticated):
        basin.Client(b.address, token="wrong-token").queue("attach-me")
    # A dead-letter queue is written to: creating with one needs write on it.
    with pytest.raises(grpc.RpcError) as e:
        s.queues.CreateQueue(queue_pb2.CreateQueueRequest(
            name="with-dlq", options=queue_pb2.QueueOptions(dead_letter_queue="attach-me")),
            metadata=metadata(token_of("configurer")), timeout=T)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_binding_a_queue_to_a_topic_needs_read_on_the_topic(
        secured: Tuple[Broker, Stubs]) -> None:
    _, s = secured
    md = metadata(token_of("publisher"))
    s.queues.CreateQueue(queue_pb2.CreateQueueRequest(name="pub-mine"), metadata=md, timeout=T)
    # Binding its queue to every topic would let it read what it may only publish to.
    code, details = code_of(lambda: s.topics.BindQueue(
        topic_pb2.BindQueueRequest(topic_pattern="#", queue="pub-mine"), metadata=md, timeout=T))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "read" in details


def test_the_table_is_in_docs_security_md() -> None:
    with open(os.path.join(ROOT, "docs", "security.md")) as f:
        docs = f.read()
    assert table_markdown() in docs, "docs/security.md needs this table:\n" + table_markdown()


def test_denials_and_configure_actions_are_audited(users_file: str, tmp_path: Any) -> None:
    log = tmp_path / "basind.log"
    b = Broker("--users", users_file, "--log-level", "info", "--log-file", str(log))
    try:
        s = Stubs(channel(b.address))
        create(s, metadata(token_of("configurer")), "audited", {})
        code, _ = code_of(lambda: s.queues.Put(queue_pb2.PutRequest(queue="audited", payload=b""),
                                                metadata=metadata(token_of("reader")),
                                                timeout=T))
        assert code == grpc.StatusCode.PERMISSION_DENIED

        def lines() -> List[str]:
            return [ln for ln in log.read_text().splitlines() if " audit {" in ln]
        assert wait_until(lambda: len(lines()) >= 2)
        import json
        events = [json.loads(ln.split(" audit ", 1)[1]) for ln in lines()]
        assert {"audit": "configure", "user": "configurer", "method": "CreateQueue",
                "object": "audited"}.items() <= events[0].items()
        assert events[1]["audit"] == "denied" and events[1]["user"] == "reader"
        assert events[1]["permission"] == "write" and events[1]["object"] == "audited"
        assert events[1]["peer"].startswith("ipv4:127.0.0.1:")
    finally:
        b.close()


def test_sighup_rotates_tokens(tmp_path: Any) -> None:
    path = tmp_path / "users.toml"
    path.write_text(users_toml({"root": USERS["root"]}))
    b = Broker("--users", str(path))
    try:
        old = basin.Client(b.address, token=token_of("root"))
        assert old.list_queues() == []
        path.write_text(users_toml({"root": ("the-new-root-token-0123456789", USERS["root"][1])}))
        assert b.proc is not None
        b.proc.send_signal(signal.SIGHUP)

        def refused() -> bool:
            try:
                basin.Client(b.address, token=token_of("root")).list_queues()
                return False
            except basin.Unauthenticated:
                return True
        assert wait_until(refused)
        assert basin.Client(b.address, token="the-new-root-token-0123456789").list_queues() == []
    finally:
        b.close()


def test_asyncio_and_default_connections_read_the_token_from_the_environment(
        secured: Tuple[Broker, Stubs], monkeypatch: Any) -> None:
    import asyncio
    import basin.aio
    b, _ = secured
    monkeypatch.setenv("BASIN_TOKEN", token_of("root"))

    async def round_trip() -> Any:
        q = basin.aio.JoinableQueue("aio-secured", address=b.address)
        await q.put({"n": 1})
        item = await q.get()
        await q.task_done()
        return item
    assert asyncio.run(round_trip()) == {"n": 1}
    # The blocking classes' shared connection too.
    assert basin.JoinableQueue("aio-secured", address=b.address).qsize() == 0
    monkeypatch.setenv("BASIN_TOKEN", "not-a-token-of-anyone")
    with pytest.raises(basin.Unauthenticated):
        asyncio.run(round_trip())
    with pytest.raises(basin.Unauthenticated):
        basin.JoinableQueue("aio-secured", address=b.address)


def test_dashboard_queue_actions_need_a_token_with_configure(users_file: str, tmp_path: Any) -> None:
    import urllib.error
    import urllib.request
    log = tmp_path / "basind.log"
    b = Broker("--users", users_file, "--http-listen", "127.0.0.1:0", "--http-admin",
               "--log-level", "info", "--log-file", str(log))
    try:
        existing(Stubs(channel(b.address)), "dash-q")

        def post(token: Optional[str], action: str = "close") -> int:
            headers = {"X-Basin-Action": "1"}
            if token is not None:
                headers["Authorization"] = "Bearer " + token
            req = urllib.request.Request(f"http://{b.http_address}/api/queues/dash-q/{action}",
                                         method="POST", headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code
        assert post(None) == 401
        assert post("not-a-token-of-anyone") == 401
        assert post(token_of("reader")) == 403
        assert post(token_of("configurer")) == 200
        assert post(token_of("reader"), "delete") == 403
        assert post(token_of("configurer"), "delete") == 200
        assert wait_until(lambda: '"method":"DeleteQueue (http)"' in log.read_text())
        audit = [ln for ln in log.read_text().splitlines() if "(http)" in ln]
        assert len(audit) == 2 and all('"user":"configurer"' in ln for ln in audit)
    finally:
        b.close()


def test_a_reload_that_revokes_a_token_ends_the_streams_that_use_it(tmp_path: Any) -> None:
    import queue as stdqueue
    import threading
    streamer = ("streamer-token-0123456789ab", 'write = ".*"\nread = ".*"')
    path = tmp_path / "users.toml"
    path.write_text(users_toml({"root": USERS["root"], "streamer": streamer}))
    b = Broker("--users", str(path))
    try:
        s = Stubs(channel(b.address))
        existing(s, "revoked")
        md = metadata(streamer[0])
        produce_next: "stdqueue.Queue[Any]" = stdqueue.Queue()
        consume_next: "stdqueue.Queue[Any]" = stdqueue.Queue()

        def requests(q: "stdqueue.Queue[Any]") -> Iterator[Any]:
            while True:
                item = q.get()
                if item is None:
                    return
                yield item

        def batch(n: int) -> queue_pb2.ProduceRequest:
            return queue_pb2.ProduceRequest(queue="revoked", batch_id=n,
                                            messages=[queue_pb2.PutMessage(payload=b"p")])
        produce_next.put(batch(1))
        produced = s.queues.Produce(requests(produce_next), metadata=md, timeout=30)
        assert next(produced).batch_id == 1
        consume_next.put(queue_pb2.ConsumeRequest(queue="revoked", prefetch=1))
        consumed = s.queues.Consume(requests(consume_next), metadata=md, timeout=30)
        delivery = next(consumed)
        # The streamer's token is replaced by another: SIGHUP.
        path.write_text(users_toml({"root": USERS["root"],
                                    "streamer": ("a-new-token-0123456789abc", streamer[1])}))
        assert b.proc is not None
        b.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: code_of(lambda: s.queues.ListQueues(
            queue_pb2.ListQueuesRequest(), metadata=md, timeout=T))[0]
            == grpc.StatusCode.UNAUTHENTICATED)
        # Each stream's next request is refused, and ends it.
        produce_next.put(batch(2))
        with pytest.raises(grpc.RpcError) as e:
            next(produced)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        tag = delivery.deliveries[0].delivery_tag
        consume_next.put(queue_pb2.ConsumeRequest(acks=[tag]))
        with pytest.raises(grpc.RpcError) as e:
            for _ in consumed:
                pass
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        produce_next.put(None)
        consume_next.put(None)
        # Nothing of batch 2 was put; the refused ack left its message to come again.
        info = s.queues.GetQueue(queue_pb2.GetQueueRequest(name="revoked"),
                                 metadata=metadata(token_of("root")), timeout=T).queue
        assert info.stats.total_put == 1 and info.stats.total_done == 0
    finally:
        b.close()


def test_a_subscription_past_the_term_cap_is_refused_before_any_term_is_checked(
        secured: Tuple[Broker, Stubs]) -> None:
    _, s = secured
    # 1,025 topics (one past --max-subscription-terms), none readable by this user.
    too_many = [f"t{i}" for i in range(1025)]
    code, details = code_of(lambda: subscribe_to(s, metadata(token_of("nobody")), too_many))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "--max-subscription-terms" in details
    code, _ = code_of(lambda: subscribe_to(s, metadata(token_of("nobody")), []))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def subscribe_to(s: Stubs, md: Md, topics: List[str]) -> Any:
    return first_of(s.topics.Subscribe(topic_pb2.SubscribeRequest(topics=topics), metadata=md,
                                       timeout=T))


def test_publish_stream_checks_every_topic_of_each_batch(
        secured: Tuple[Broker, Stubs]) -> None:
    _, s = secured
    md = metadata(token_of("nobody"))  # may write "elsewhere" only

    def batch(batch_id: int, *topics: str) -> topic_pb2.PublishStreamRequest:
        return topic_pb2.PublishStreamRequest(batch_id=batch_id, messages=[
            topic_pb2.PublishRequest(topic=t, payload=b"p") for t in topics])

    def published() -> int:
        listing = s.topics.ListTopics(topic_pb2.ListTopicsRequest(),
                                      metadata=metadata(token_of("root")), timeout=T)
        return sum(t.published for t in listing.topics if t.name == "elsewhere")

    before = published()
    answers = []
    with pytest.raises(grpc.RpcError) as e:
        # An invalid name is that message's failure, not a refusal; a topic
        # the user may not write ends the stream, and nothing of its batch goes.
        for answer in s.topics.PublishStream(
                iter([batch(1, "elsewhere", "not a topic"), batch(2, "elsewhere", "secret")]),
                metadata=md, timeout=T):
            answers.append(answer)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert [(a.batch_id, a.failed, [(f.index, f.error_reason) for f in a.failures])
            for a in answers] == [(1, 1, [(1, "INVALID_TOPIC")])]
    assert published() == before + 1
