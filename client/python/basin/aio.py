"""asyncio variants, on grpcio's ``grpc.aio``: the same names, awaited.

    import basin.aio

    async def main():
        q = basin.aio.JoinableQueue("work", 3)      # attaches on first use
        await q.put({"n": 1})
        item = await q.get()
        await q.task_done()
        await q.join()
        async for item in q: ...                     # until close_queue()

        async with basin.aio.Consumer("work", prefetch=500) as consumer:
            async for msg in consumer:
                await msg.ack()

        p = basin.aio.PubSub()
        await p.subscribe("news.eu")
        async for item in p.listen(): ...
        await basin.aio.publish("news.eu", "hello")

Behaviour, errors and settings are those of the blocking classes (see
basin.queues, basin.consumer, basin.pubsub); the differences: a queue
attaches (creates or checks the queue) on its first call, or at
``await q.attach()``; methods that talk to the broker are coroutines; the
Consumer does not reconnect (a broken stream ends iteration with
:class:`basin.Unavailable`); there is no aio Producer: ``put_many`` and
``asyncio.gather`` over ``put`` give asyncio code its batching. One channel
per event loop and process.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, AsyncIterator, Dict, List, Optional, Tuple

import grpc

from . import errors
from ._connection import (_CHANNEL_OPTIONS, ANSWER_SLACK, DEFAULT_ADDRESS, MAX_CALL_WAIT,
                          clamp_timeout, duration)
from .message import Message
from .pubsub import _POLICIES, Data, encode_data
from .queues import MAX_BATCH, _seconds, check_settings, create_request, wanted_settings
from .serializers import Serializer, SerializerSpec, resolve
from .v1 import queue_pb2 as pb
from .v1 import queue_pb2_grpc, topic_pb2, topic_pb2_grpc

__all__ = ["Queue", "JoinableQueue", "Consumer", "PubSub", "AioMessage", "publish"]

_channels: Dict[Tuple[str, int, int], Any] = {}


def _stubs(address: str) -> Tuple[Any, Any]:
    """This event loop's channel to ``address`` (grpc.aio channels belong to one loop)."""
    key = (address, os.getpid(), id(asyncio.get_running_loop()))
    entry = _channels.get(key)
    if entry is None:
        channel = grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)
        entry = _channels[key] = (queue_pb2_grpc.QueueServiceStub(channel),
                                  topic_pb2_grpc.TopicServiceStub(channel))
    return entry


async def _call(method: Any, request: Any, timeout: Optional[float] = ANSWER_SLACK) -> Any:
    try:
        return await method(request, timeout=timeout)
    except grpc.RpcError as e:
        raise errors.from_rpc_error(e) from None


async def _wait_call(method: Any, make_request: Any, block: bool, timeout: Optional[float],
                     timed_out: type) -> Any:
    """As Connection.wait_call: re-issues a wait the broker ended at its cap."""
    loop = asyncio.get_running_loop()
    timeout = clamp_timeout(timeout) if block else 0.0
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        wait = MAX_CALL_WAIT if deadline is None else min(MAX_CALL_WAIT,
                                                           max(0.0, deadline - loop.time()))
        try:
            return await method(make_request(duration(wait)), timeout=wait + ANSWER_SLACK)
        except grpc.RpcError as e:
            error = errors.from_rpc_error(e)
        if isinstance(error, timed_out) and (deadline is None or deadline - loop.time() > 0):
            continue
        raise error


class AioMessage(Message):
    """A Message whose task_done / ack / release / extend are coroutines."""

    __slots__ = ()

    async def task_done(self) -> None:  # type: ignore[override]
        await self._source._afinish(self)

    async def ack(self) -> None:  # type: ignore[override]
        await self._source._afinish(self)

    async def release(self) -> None:  # type: ignore[override]
        await self._source._arelease(self)

    async def extend(self, seconds: Optional[float] = None) -> None:  # type: ignore[override]
        await self._source._aextend(self, seconds)


class Queue:
    """``basin.Queue`` for asyncio: ``get`` finishes what it hands out."""

    _joinable = False

    def __init__(self, name: str, maxsize: int = 0, *, address: str = DEFAULT_ADDRESS,
                 durable: Optional[bool] = None, visibility_timeout: Optional[float] = None,
                 max_deliveries: Optional[int] = None, dead_letter_queue: Optional[str] = None,
                 max_bytes: Optional[int] = None, serializer: SerializerSpec = "pickle") -> None:
        self._name = name
        self._address = address
        self._serializer: Serializer = resolve(serializer)
        self._wanted = wanted_settings(maxsize, durable, visibility_timeout, max_deliveries,
                                       dead_letter_queue, max_bytes)
        self._attached = False
        self._outstanding: Dict[str, AioMessage] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def _queues(self) -> Any:
        return _stubs(self._address)[0]

    async def attach(self) -> None:
        """Creates the queue, or checks the existing one's settings."""
        if self._attached:
            return
        try:
            info = await self._info()
        except errors.NotFound:
            try:
                info = (await _call(self._queues.CreateQueue,
                                    create_request(self._name, self._wanted))).queue
            except errors.AlreadyExists:
                info = await self._info()
        check_settings(self._name, info, self._wanted)
        self._attached = True

    async def _info(self) -> Any:
        return (await _call(self._queues.GetQueue, pb.GetQueueRequest(name=self._name))).queue

    async def info(self) -> pb.QueueInfo:
        await self.attach()
        info: pb.QueueInfo = await self._info()
        return info

    async def qsize(self) -> int:
        return int((await self.info()).stats.size)

    async def empty(self) -> bool:
        return bool((await self.info()).stats.empty)

    async def full(self) -> bool:
        return bool((await self.info()).stats.full)

    async def put(self, obj: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        await self.attach()
        payload = self._serializer.dumps(obj)
        name = self._name
        await _wait_call(self._queues.Put,
                         lambda wait: pb.PutRequest(queue=name, payload=payload, timeout=wait),
                         block, timeout, errors.Full)

    async def put_nowait(self, obj: Any) -> None:
        await self.put(obj, False)

    async def put_many(self, objs: List[Any], block: bool = True,
                       timeout: Optional[float] = None) -> List[int]:
        await self.attach()
        messages = [pb.PutMessage(payload=self._serializer.dumps(o)) for o in objs]
        if not messages:
            return []
        if len(messages) > MAX_BATCH:
            raise ValueError(f"put_many takes at most {MAX_BATCH} objects, not {len(messages)}")
        name = self._name
        response = await _wait_call(
            self._queues.Put, lambda wait: pb.PutRequest(queue=name, messages=messages,
                                                         timeout=wait),
            block, timeout, errors.Full)
        ids = []
        for r in response.results:
            if r.error_reason:
                raise errors.from_reason(r.error_reason, r.error_message)
            ids.append(int(r.message_id))
        return ids

    async def _get(self, max_messages: int, block: bool,
                   timeout: Optional[float]) -> List[AioMessage]:
        await self.attach()
        name = self._name
        response = await _wait_call(
            self._queues.Get,
            lambda wait: pb.GetRequest(queue=name, timeout=wait, max_messages=max_messages),
            block, timeout, errors.Empty)
        if max_messages <= 1:
            got = [AioMessage(name, response.message, response.delivery_tag, self,
                              self._serializer)]
        else:
            got = [AioMessage(name, d.message, d.delivery_tag, self, self._serializer)
                   for d in response.deliveries]
        if self._joinable:
            for m in got:
                self._outstanding[m._tag] = m
        else:
            await asyncio.gather(*(self._task_done_call(m._tag) for m in got))
        return got

    async def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        return (await self._get(1, block, timeout))[0].value

    async def get_nowait(self) -> Any:
        return await self.get(False)

    async def get_message(self, block: bool = True,
                          timeout: Optional[float] = None) -> AioMessage:
        return (await self._get(1, block, timeout))[0]

    async def get_many(self, max_items: int, block: bool = True,
                       timeout: Optional[float] = None) -> List[AioMessage]:
        if not 1 <= max_items <= MAX_BATCH:
            raise ValueError(f"max_items must be 1 to {MAX_BATCH}")
        return await self._get(max_items, block, timeout)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while True:
            try:
                yield await self.get()
            except errors.Closed:
                return

    async def _task_done_call(self, tag: str) -> None:
        await _call(self._queues.TaskDone, pb.TaskDoneRequest(queue=self._name, delivery_tag=tag))

    async def _afinish(self, message: Message) -> None:
        if message.queue != self._name or not isinstance(message._tag, str):
            raise ValueError(f"{message!r} was not delivered by queue {self._name!r}")
        owner = message._source
        if isinstance(owner, Queue):
            owner._outstanding.pop(message._tag, None)
        await self._task_done_call(message._tag)

    async def _arelease(self, message: Message) -> None:
        self._outstanding.pop(message._tag, None)
        await _call(self._queues.Release,
                    pb.ReleaseRequest(queue=self._name, delivery_tag=message._tag))

    async def _aextend(self, message: Message, seconds: Optional[float]) -> None:
        if seconds is None:
            seconds = _seconds((await self.info()).options.visibility_timeout)
        request = pb.ExtendLeaseRequest(queue=self._name, delivery_tag=message._tag)
        request.duration.CopyFrom(duration(seconds))
        await _call(self._queues.ExtendLease, request)

    async def close_queue(self) -> bool:
        await self.attach()
        return bool((await _call(self._queues.CloseQueue,
                                 pb.CloseQueueRequest(queue=self._name))).already_closed)

    async def delete_queue(self) -> int:
        return int((await _call(self._queues.DeleteQueue,
                                pb.DeleteQueueRequest(name=self._name))).dropped_messages)


class JoinableQueue(Queue):
    """``basin.JoinableQueue`` for asyncio."""

    _joinable = True

    async def task_done(self, message: Optional[Message] = None) -> None:
        if message is None:
            if not self._outstanding:
                raise ValueError("task_done() called too many times")
            message = self._outstanding.pop(next(iter(self._outstanding)))
        await self._afinish(message)

    async def join(self, timeout: Optional[float] = None) -> None:
        await self.attach()
        name = self._name
        await _wait_call(self._queues.Join, lambda wait: pb.JoinRequest(queue=name, timeout=wait),
                         True, timeout, errors.JoinTimeout)


class Consumer:
    """``basin.Consumer`` for asyncio (without reconnects)."""

    def __init__(self, queue: str, *, address: str = DEFAULT_ADDRESS,
                 serializer: SerializerSpec = "pickle", prefetch: int = 100,
                 ack_timeout: Optional[float] = None, ack_batch: int = 64) -> None:
        if not 1 <= prefetch <= 10_000:
            raise ValueError("prefetch must be 1 to 10,000")
        if ack_batch < 1:
            raise ValueError("ack_batch must be at least 1")
        self._queue = queue
        self._address = address
        self._serializer = resolve(serializer)
        self._prefetch = prefetch
        self._ack_timeout = ack_timeout
        self._ack_batch = ack_batch
        self._call: Any = None
        self._ready: List[AioMessage] = []
        self._acks: List[int] = []
        self._ended: Optional[BaseException] = None

    async def start(self) -> None:
        """Opens the stream (done by the first ``get`` or ``async with``)."""
        if self._call is not None:
            return
        queues = _stubs(self._address)[0]
        await _call(queues.GetQueue, pb.GetQueueRequest(name=self._queue))
        self._call = queues.Consume()
        hello = pb.ConsumeRequest(queue=self._queue, prefetch=self._prefetch)
        if self._ack_timeout is not None:
            hello.ack_timeout.CopyFrom(duration(self._ack_timeout))
        await self._call.write(hello)

    async def get(self, timeout: Optional[float] = None) -> AioMessage:
        """The next message; :class:`basin.Empty` after ``timeout`` seconds,
        :class:`basin.Closed` once the queue is closed and drained."""
        await self.start()
        while not self._ready:
            if self._ended is not None:
                raise self._ended
            await self.flush()
            try:
                response = await asyncio.wait_for(self._call.read(), clamp_timeout(timeout))
            except asyncio.TimeoutError:
                raise errors.Empty(f"no message from {self._queue!r} within {timeout} s",
                                   grpc.StatusCode.DEADLINE_EXCEEDED, "QUEUE_EMPTY") from None
            except grpc.RpcError as e:
                self._ended = errors.from_rpc_error(e)
                if e.code() == grpc.StatusCode.CANCELLED:
                    self._ended = errors.Closed("the consumer is closed", e.code())
                continue
            if response is grpc.aio.EOF:
                self._ended = errors.Closed("the consumer's stream ended",
                                            grpc.StatusCode.CANCELLED)
                continue
            self._ready.extend(AioMessage(self._queue, d.message, d.delivery_tag, self,
                                          self._serializer) for d in response.deliveries)
            self._ready.reverse()
        return self._ready.pop()

    def __aiter__(self) -> AsyncIterator[AioMessage]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[AioMessage]:
        while True:
            try:
                yield await self.get()
            except errors.Closed:
                return

    async def _afinish(self, message: Message) -> None:
        if self._ended is None:
            self._acks.append(message._tag)
            if len(self._acks) >= self._ack_batch:
                await self.flush()

    async def _arelease(self, message: Message) -> None:
        if self._ended is None:
            await self.flush()
            await self._call.write(pb.ConsumeRequest(releases=[message._tag]))

    async def _aextend(self, message: Message, seconds: Optional[float]) -> None:
        if self._ended is None:
            await self._call.write(pb.ConsumeRequest(extends=[message._tag]))

    async def flush(self) -> None:
        """Sends the pending acks now."""
        if self._acks and self._ended is None and self._call is not None:
            acks, self._acks = self._acks, []
            await self._call.write(pb.ConsumeRequest(acks=acks))

    async def close(self) -> None:
        """Sends pending acks, ends the stream and waits for the broker to end it."""
        if self._call is None or self._ended is not None:
            self._ended = self._ended or errors.Closed("the consumer is closed")
            return
        await self.flush()
        await self._call.done_writing()
        try:
            while await asyncio.wait_for(self._call.read(), ANSWER_SLACK) is not grpc.aio.EOF:
                pass  # deliveries after the half-close go back to the queue
        except (grpc.RpcError, asyncio.TimeoutError):
            self._call.cancel()
        self._ended = errors.Closed("the consumer is closed", grpc.StatusCode.CANCELLED)
        self._ready.clear()

    async def __aenter__(self) -> "Consumer":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class PubSub:
    """``basin.PubSub`` for asyncio: the same items, from ``await get_message()``
    and ``async for item in listen()``."""

    def __init__(self, address: str = DEFAULT_ADDRESS, *, decode_responses: bool = False,
                 buffer_messages: int = 0, buffer_bytes: int = 0,
                 overflow: str = "drop_oldest") -> None:
        if overflow not in _POLICIES:
            raise ValueError("overflow must be 'drop_oldest' or 'disconnect'")
        self._address = address
        self._decode_responses = decode_responses
        self._options = dict(buffer_messages=buffer_messages, buffer_bytes=buffer_bytes,
                             overflow_policy=_POLICIES[overflow])
        self._items: "asyncio.Queue[Any]" = asyncio.Queue(buffer_messages or 10_000)
        self._subs: Dict[Tuple[str, bool], "asyncio.Task[None]"] = {}

    def _decode(self, value: bytes) -> Any:
        return value.decode() if self._decode_responses else value

    @property
    def subscribed(self) -> bool:
        return bool(self._subs)

    async def _add(self, terms: Tuple[Any, ...], is_pattern: bool) -> None:
        topics = _stubs(self._address)[1]
        for raw in terms:
            term = raw.decode() if isinstance(raw, (bytes, bytearray)) else str(raw)
            if (term, is_pattern) in self._subs:
                continue
            request = topic_pb2.SubscribeRequest(**self._options)  # type: ignore[arg-type]
            (request.patterns if is_pattern else request.topics).append(term)
            call = topics.Subscribe(request)
            try:
                first = await call.read()
            except grpc.RpcError as e:
                raise errors.from_rpc_error(e) from None
            if first is grpc.aio.EOF:
                raise errors.Unavailable(f"the subscription to {term!r} ended")
            self._subs[(term, is_pattern)] = asyncio.ensure_future(
                self._read(call, term, is_pattern, first))
            await self._items.put({"type": "psubscribe" if is_pattern else "subscribe",
                                   "pattern": None, "channel": self._decode(term.encode()),
                                   "data": len(self._subs), "dropped_before": 0})

    async def _read(self, call: Any, term: str, is_pattern: bool, first: Any) -> None:
        kind = "pmessage" if is_pattern else "message"
        response = first
        try:
            while response is not grpc.aio.EOF:
                for m in response.messages:
                    await self._items.put({
                        "type": kind,
                        "pattern": self._decode(m.pattern.encode()) if is_pattern else None,
                        "channel": self._decode(m.topic.encode()),
                        "data": self._decode(m.payload),
                        "dropped_before": int(m.dropped_before)})
                response = await call.read()
            await self._items.put(errors.Unavailable(f"the subscription to {term!r} ended"))
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                await self._items.put(errors.from_rpc_error(e))
        except asyncio.CancelledError:
            call.cancel()
            raise

    async def _remove(self, terms: Tuple[Any, ...], is_pattern: bool) -> None:
        names = [t.decode() if isinstance(t, (bytes, bytearray)) else str(t) for t in terms]
        keys = [(n, is_pattern) for n in names] or [k for k in self._subs if k[1] == is_pattern]
        for key in keys:
            task = self._subs.pop(key, None)
            if task is None:
                continue
            task.cancel()
            await self._items.put({"type": "punsubscribe" if is_pattern else "unsubscribe",
                                   "pattern": None, "channel": self._decode(key[0].encode()),
                                   "data": len(self._subs), "dropped_before": 0})

    async def subscribe(self, *topics: Any) -> None:
        await self._add(topics, False)

    async def psubscribe(self, *patterns: Any) -> None:
        await self._add(patterns, True)

    async def unsubscribe(self, *topics: Any) -> None:
        await self._remove(topics, False)

    async def punsubscribe(self, *patterns: Any) -> None:
        await self._remove(patterns, True)

    async def get_message(self, ignore_subscribe_messages: bool = False,
                          timeout: Optional[float] = 0.0) -> Optional[Dict[str, Any]]:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + max(0.0, timeout)
        while True:
            try:
                if deadline is None:
                    item = await self._items.get()
                else:
                    item = await asyncio.wait_for(self._items.get(),
                                                  max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                return None
            if isinstance(item, BaseException):
                raise item
            if ignore_subscribe_messages and item["type"] not in ("message", "pmessage"):
                continue
            return item  # type: ignore[no-any-return]

    async def listen(self) -> AsyncIterator[Dict[str, Any]]:
        while self.subscribed or not self._items.empty():
            item = await self.get_message(timeout=None if self.subscribed else 0)
            if item is not None:
                yield item

    async def close(self) -> None:
        tasks = list(self._subs.values())
        self._subs.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> "PubSub":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


async def publish(topic: str, data: Data, *, address: str = DEFAULT_ADDRESS,
                  headers: Optional[Dict[str, str]] = None) -> int:
    """Publishes; returns the live subscriptions reached."""
    request = topic_pb2.PublishRequest(topic=topic, payload=encode_data(data),
                                       headers=headers or {})
    return int((await _call(_stubs(address)[1].Publish, request)).receivers)
