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
import collections
import os
import threading
from typing import Any, AsyncIterator, Deque, Dict, List, Optional, Sequence, Tuple

import grpc

from . import errors
from ._schedule import Delay, When, release_fields, schedule
from ._security import Security, open_aio_channel, security_from
from ._connection import (_CHANNEL_OPTIONS, ANSWER_SLACK, DEFAULT_ADDRESS, MAX_CALL_WAIT,
                          clamp_timeout, duration)
from .message import ColumnMessage, Message, from_columns
from .pubsub import _POLICIES, Data, control_item, encode_data, message_item
from .queues import MAX_BATCH, _seconds, check_settings, create_request, wanted_settings
from .serializers import Serializer, SerializerSpec, resolve
from .v1 import queue_pb2 as pb
from .v1 import queue_pb2_grpc, topic_pb2, topic_pb2_grpc

__all__ = ["Queue", "JoinableQueue", "Consumer", "PubSub", "AioMessage", "publish"]

# Each event loop's stubs, per process and address, kept on the loop itself
# (grpc.aio channels belong to one loop). gRPC 1.51 keeps every loop it has
# served alive for good, so the channels of loops that have closed are
# dropped when a new loop makes its first one: freed, they close their
# connections (repeated asyncio.run calls leave one channel each otherwise).
_LOOP_ATTRIBUTE = "_basin_aio_stubs"
_loops_with_stubs: List[asyncio.AbstractEventLoop] = []
_loops_lock = threading.Lock()  # loops may run in several threads


def _stubs(address: str, security: Security) -> Tuple[Any, Any]:
    """This event loop's channel to ``address`` with ``security`` (the
    caller's, read from the environment once, when it was made: not on every
    call, where it would cost microseconds a call)."""
    loop = asyncio.get_running_loop()
    per_loop: Optional[Dict[Tuple[str, int, Security], Any]] = getattr(
        loop, _LOOP_ATTRIBUTE, None)
    if per_loop is None:
        with _loops_lock:
            for old in [o for o in _loops_with_stubs if o.is_closed()]:
                _loops_with_stubs.remove(old)
                delattr(old, _LOOP_ATTRIBUTE)
            per_loop = {}
            setattr(loop, _LOOP_ATTRIBUTE, per_loop)
            _loops_with_stubs.append(loop)
    key = (address, os.getpid(), security)
    entry = per_loop.get(key)
    if entry is None:
        channel = open_aio_channel(address, security, _CHANNEL_OPTIONS)
        entry = per_loop[key] = (queue_pb2_grpc.QueueServiceStub(channel),
                                 topic_pb2_grpc.TopicServiceStub(channel))
    return entry


async def _wait_event(event: asyncio.Event, timeout: Optional[float]) -> bool:
    """True once ``event`` is set, False after ``timeout`` seconds (None:
    no limit). Cancelling a wait on an Event loses nothing, unlike
    cancelling a read of a stream (which cancels the whole call)."""
    if timeout is None:
        await event.wait()
        return True
    try:
        await asyncio.wait_for(event.wait(), timeout)
        return True
    except asyncio.TimeoutError:
        return event.is_set()


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


class _Awaited:
    """task_done / ack / release / extend as coroutines, for the aio messages."""

    __slots__ = ()
    _source: Any

    async def task_done(self) -> None:
        await self._source._afinish(self)

    async def ack(self) -> None:
        await self._source._afinish(self)

    async def release(self, delay: Optional[Delay] = None) -> None:
        await self._source._arelease(self, delay)

    async def reject(self) -> None:
        await self._source._areject(self)

    async def extend(self, seconds: Optional[float] = None) -> None:
        await self._source._aextend(self, seconds)


class AioMessage(_Awaited, Message):  # type: ignore[misc]
    """A Message whose task_done / ack / release / extend are coroutines."""

    __slots__ = ()


class AioColumnMessage(AioMessage, ColumnMessage):  # type: ignore[misc]
    """An aio Consumer's message (see message.ColumnMessage); an AioMessage."""

    __slots__ = ()


class Queue:
    """``basin.Queue`` for asyncio: ``get`` finishes what it hands out."""

    _joinable = False

    def __init__(self, name: str, maxsize: int = 0, *, address: str = DEFAULT_ADDRESS,
                 durable: Optional[bool] = None, visibility_timeout: Optional[float] = None,
                 max_deliveries: Optional[int] = None, dead_letter_queue: Optional[str] = None,
                 max_bytes: Optional[int] = None,
                 retry_backoff: Optional[Sequence[Delay]] = None,
                 message_ttl: Optional[Delay] = None, max_priority: Optional[int] = None,
                 serializer: SerializerSpec = "pickle") -> None:
        self._name = name
        self._address = address
        self._security = security_from()  # the BASIN_* environment (basin._security)
        self._serializer: Serializer = resolve(serializer)
        self._wanted = wanted_settings(maxsize, durable, visibility_timeout, max_deliveries,
                                       dead_letter_queue, max_bytes, retry_backoff,
                                       message_ttl, max_priority)
        self._attached = False
        self._outstanding: Dict[str, AioMessage] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def _queues(self) -> Any:
        return _stubs(self._address, self._security)[0]

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

    async def put(self, obj: Any, block: bool = True, timeout: Optional[float] = None, *,
                  delay: Optional[Delay] = None, deliver_at: Optional[When] = None,
                  priority: int = 0, ttl: Optional[Delay] = None,
            group: str = "") -> None:
        await self.attach()
        payload = self._serializer.dumps(obj)
        name = self._name
        when = schedule(delay, deliver_at, priority, ttl, group)
        await _wait_call(self._queues.Put,
                         lambda wait: pb.PutRequest(queue=name, payload=payload, timeout=wait,
                                                    **when),
                         block, timeout, errors.Full)

    async def put_nowait(self, obj: Any) -> None:
        await self.put(obj, False)

    async def put_many(self, objs: List[Any], block: bool = True,
                       timeout: Optional[float] = None, *, delay: Optional[Delay] = None,
                       deliver_at: Optional[When] = None, priority: int = 0,
                       ttl: Optional[Delay] = None, group: str = "") -> List[int]:
        await self.attach()
        when = schedule(delay, deliver_at, priority, ttl, group)
        messages = [pb.PutMessage(payload=self._serializer.dumps(o), **when) for o in objs]
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

    async def _arelease(self, message: Message, delay: Optional[Delay] = None) -> None:
        fields = release_fields(delay)
        self._outstanding.pop(message._tag, None)
        await _call(self._queues.Release,
                    pb.ReleaseRequest(queue=self._name, delivery_tag=message._tag, **fields))

    async def _areject(self, message: Message) -> None:
        self._outstanding.pop(message._tag, None)
        await _call(self._queues.Release,
                    pb.ReleaseRequest(queue=self._name, delivery_tag=message._tag, reject=True))

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
    """``basin.Consumer`` for asyncio (without reconnects).

    A task reads the stream into an inbox of at most ``prefetch`` deliveries
    not yet taken, so ``get(timeout)`` waits on the inbox, never on the
    stream (whose read would be cancelled with the call)."""

    def __init__(self, queue: str, *, address: str = DEFAULT_ADDRESS,
                 serializer: SerializerSpec = "pickle", prefetch: int = 100,
                 ack_timeout: Optional[float] = None, ack_batch: int = 64) -> None:
        if not 1 <= prefetch <= 10_000:
            raise ValueError("prefetch must be 1 to 10,000")
        if ack_batch < 1:
            raise ValueError("ack_batch must be at least 1")
        if ack_timeout is not None and ack_timeout <= 0:
            raise ValueError("ack_timeout must be positive")
        self._queue = queue
        self._address = address
        self._security = security_from()
        self._serializer = resolve(serializer)
        self._prefetch = prefetch
        self._ack_timeout = ack_timeout
        self._ack_batch = ack_batch
        self._call: Any = None
        self._reader: "Optional[asyncio.Task[None]]" = None
        self._inbox: Deque[Any] = collections.deque()  # responses, then the end (an exception)
        self._inbox_deliveries = 0
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._ready: Deque[AioMessage] = collections.deque()
        self._acks: List[int] = []
        self._ended: Optional[BaseException] = None
        self._closing = False

    async def start(self) -> None:
        """Opens the stream (done by the first ``get`` or ``async with``)."""
        if self._call is not None or self._ended is not None or self._closing:
            return
        queues = _stubs(self._address, self._security)[0]
        await _call(queues.GetQueue, pb.GetQueueRequest(name=self._queue))
        if self._call is not None or self._ended is not None or self._closing:
            return  # another task started it, or close() ran, meanwhile
        hello = pb.ConsumeRequest(queue=self._queue, prefetch=self._prefetch, columns=True)
        if self._ack_timeout is not None:
            hello.ack_timeout.CopyFrom(duration(self._ack_timeout))
        # The call and its reader come together (no await between): a start
        # cancelled in the write below leaves a call whose reader reports
        # its end, never a call nobody reads.
        call = self._call = queues.Consume()
        self._reader = asyncio.ensure_future(self._read())
        try:
            await call.write(hello)
        except BaseException:
            call.cancel()
            raise

    async def _read(self) -> None:
        end: BaseException
        try:
            while True:
                response = await self._call.read()
                if response is grpc.aio.EOF:
                    end = errors.Closed("the consumer's stream ended", grpc.StatusCode.CANCELLED)
                    break
                count = len(response.columns.delivery_tags)
                # Room first (a response never holds more than prefetch).
                while (self._inbox_deliveries and self._inbox_deliveries + count > self._prefetch
                       and not self._closing):
                    self._room.clear()
                    await self._room.wait()
                self._inbox_deliveries += count
                self._inbox.append(response)
                self._arrived.set()
        except grpc.RpcError as e:
            end = errors.from_rpc_error(e)
            if self._closing:
                end = errors.Closed("the consumer is closed", grpc.StatusCode.CANCELLED)
            elif errors.broken(e):  # CANCELLED by a stopping broker included
                end = errors.Unavailable(f"the consumer's stream broke: {end.details}",
                                         e.code(), end.reason)
        except asyncio.CancelledError:
            end = errors.Closed("the consumer is closed", grpc.StatusCode.CANCELLED)
        except Exception as e:  # noqa: BLE001 (a bug must not hang get())
            end = errors.Error(f"consumer stream failed: {e!r}")
        self._inbox.append(end)
        self._arrived.set()

    async def get(self, timeout: Optional[float] = None) -> AioMessage:
        """The next message; :class:`basin.Empty` after ``timeout`` seconds,
        :class:`basin.Closed` once the queue is closed and drained."""
        await self.start()
        loop = asyncio.get_running_loop()
        timeout = clamp_timeout(timeout)
        deadline = None if timeout is None else loop.time() + timeout
        while not self._ready:
            if self._ended is not None:
                raise self._ended
            await self.flush()
            if not self._inbox:
                self._arrived.clear()
                left = None if deadline is None else max(0.0, deadline - loop.time())
                if not await _wait_event(self._arrived, left) and not self._inbox:
                    raise errors.Empty(f"no message from {self._queue!r} within {timeout} s",
                                       grpc.StatusCode.DEADLINE_EXCEEDED, "QUEUE_EMPTY")
                continue
            response = self._inbox.popleft()
            if isinstance(response, BaseException):
                self._ended = response
                continue
            self._inbox_deliveries -= len(response.columns.delivery_tags)
            self._room.set()
            self._ready.extend(from_columns(AioColumnMessage, self._queue, response.columns,
                                            self, self._serializer))
        return self._ready.popleft()

    def __aiter__(self) -> AsyncIterator[AioMessage]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[AioMessage]:
        while True:
            try:
                yield await self.get()
            except errors.Closed:
                return

    def _live(self) -> bool:
        return (self._ended is None and self._call is not None and not self._closing
                and not self._call.done())

    async def _send(self, request: pb.ConsumeRequest) -> None:
        """Writes on the stream; a stream that ended meanwhile drops it (its
        deliveries went back to the queue), as the blocking Consumer does.
        Shielded: a caller cancelled mid-write must not cancel the stream."""
        try:
            await asyncio.shield(self._call.write(request))
        except (grpc.RpcError, asyncio.InvalidStateError):
            pass

    async def _afinish(self, message: Message) -> None:
        if self._live():
            self._acks.append(message._tag)
            if len(self._acks) >= self._ack_batch:
                await self.flush()

    async def _arelease(self, message: Message, delay: Optional[Delay] = None) -> None:
        fields = release_fields(delay, "release_delay")
        if self._live():
            await self.flush()
            await self._send(pb.ConsumeRequest(releases=[message._tag], **fields))

    async def _areject(self, message: Message) -> None:
        if self._live():
            await self.flush()
            await self._send(pb.ConsumeRequest(rejects=[message._tag]))

    async def _aextend(self, message: Message, seconds: Optional[float]) -> None:
        if seconds is not None:
            raise ValueError("a Consumer's message is extended by its ack_timeout; "
                             "call extend() without seconds")
        if self._live():
            await self._send(pb.ConsumeRequest(extends=[message._tag]))

    async def flush(self) -> None:
        """Sends the pending acks now."""
        if self._acks and self._live():
            acks, self._acks = self._acks, []
            await self._send(pb.ConsumeRequest(acks=acks))

    async def close(self) -> None:
        """Sends pending acks, ends the stream and waits (up to 10 s, then
        cancels) for the broker to end it: the acks are applied before what
        the stream still holds goes back to the queue."""
        if self._closing:
            return
        if self._call is None or self._reader is None:
            self._closing = True
            self._ended = self._ended or errors.Closed("the consumer is closed",
                                                       grpc.StatusCode.CANCELLED)
            return
        try:
            await self.flush()
            self._closing = True
            self._room.set()  # the reader reads on to the end of the stream
            await self._call.done_writing()
            await asyncio.wait_for(asyncio.shield(self._reader), ANSWER_SLACK)
        except (grpc.RpcError, asyncio.TimeoutError, asyncio.InvalidStateError):
            pass
        finally:
            self._closing = True
            self._call.cancel()
            self._reader.cancel()
            self._ended = errors.Closed("the consumer is closed", grpc.StatusCode.CANCELLED)
            self._ready.clear()
            self._inbox.clear()

    async def __aenter__(self) -> "Consumer":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class _Sub:
    """One aio subscription: its stream and the task reading it."""

    __slots__ = ("term", "is_pattern", "call", "task", "cancelled")

    def __init__(self, term: str, is_pattern: bool, call: Any) -> None:
        self.term = term
        self.is_pattern = is_pattern
        self.call = call
        self.task: "Optional[asyncio.Task[None]]" = None
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.call.cancel()
        if self.task is not None:
            self.task.cancel()


class PubSub:
    """``basin.PubSub`` for asyncio: the same items, from ``await get_message()``
    and ``async for item in listen()``. Unread items are bounded as in the
    blocking PubSub; (un)subscribe items and errors never wait for room."""

    def __init__(self, address: str = DEFAULT_ADDRESS, *, decode_responses: bool = False,
                 buffer_messages: int = 0, buffer_bytes: int = 0,
                 overflow: str = "drop_oldest") -> None:
        if overflow not in _POLICIES:
            raise ValueError("overflow must be 'drop_oldest' or 'disconnect'")
        self._address = address
        self._security = security_from()
        self._decode_responses = decode_responses
        self._options = dict(buffer_messages=buffer_messages, buffer_bytes=buffer_bytes,
                             overflow_policy=_POLICIES[overflow])
        self._items: Deque[Any] = collections.deque()
        self._max_items = buffer_messages or 10_000
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._subs: Dict[Tuple[str, bool], _Sub] = {}

    @property
    def subscribed(self) -> bool:
        return bool(self._subs)

    def _push(self, item: Any) -> None:
        self._items.append(item)
        self._arrived.set()

    async def _add(self, terms: Tuple[Any, ...], is_pattern: bool) -> None:
        topics = _stubs(self._address, self._security)[1]
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
            if (term, is_pattern) in self._subs:  # another task subscribed meanwhile
                call.cancel()
                continue
            sub = self._subs[(term, is_pattern)] = _Sub(term, is_pattern, call)
            self._push(control_item("psubscribe" if is_pattern else "subscribe", term,
                                    len(self._subs), self._decode_responses))
            sub.task = asyncio.ensure_future(self._read(sub, first))

    async def _read(self, sub: _Sub, first: Any) -> None:
        kind = "pmessage" if sub.is_pattern else "message"
        response = first
        error: BaseException
        try:
            while response is not grpc.aio.EOF:
                for m in response.messages:
                    while len(self._items) >= self._max_items and not sub.cancelled:
                        self._room.clear()
                        await self._room.wait()
                    if sub.cancelled:
                        return  # nothing of it after its "unsubscribe" item
                    self._push(message_item(kind, m, sub.is_pattern, self._decode_responses))
                response = await sub.call.read()
            error = errors.Unavailable(f"the subscription to {sub.term!r} ended")
        except grpc.RpcError as e:
            error = errors.from_rpc_error(e)
        except asyncio.CancelledError:
            sub.call.cancel()
            raise
        except Exception as e:  # noqa: BLE001 (a bug must not end it silently)
            error = errors.Error(f"the subscription to {sub.term!r} failed: {e!r}")
        if not sub.cancelled:
            # Dead: out of the table (subscribing again opens a new one).
            if self._subs.get((sub.term, sub.is_pattern)) is sub:
                del self._subs[(sub.term, sub.is_pattern)]
            self._push(error)

    async def _remove(self, terms: Tuple[Any, ...], is_pattern: bool) -> None:
        names = [t.decode() if isinstance(t, (bytes, bytearray)) else str(t) for t in terms]
        keys = [(n, is_pattern) for n in names] or [k for k in self._subs if k[1] == is_pattern]
        for key in keys:
            sub = self._subs.pop(key, None)
            if sub is None:
                continue
            sub.cancel()
            self._room.set()
            self._push(control_item("punsubscribe" if is_pattern else "unsubscribe", key[0],
                                    len(self._subs), self._decode_responses))

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
        """The next item, or None if none comes within ``timeout`` seconds
        (None: as long as it takes, or until nothing is subscribed)."""
        loop = asyncio.get_running_loop()
        timeout = clamp_timeout(timeout)
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            while not self._items:
                left = None if deadline is None else deadline - loop.time()
                if left is not None and left <= 0 or not self._subs:
                    return None
                self._arrived.clear()
                await _wait_event(self._arrived, left)
            item = self._items.popleft()
            self._room.set()
            if isinstance(item, BaseException):
                raise item
            if ignore_subscribe_messages and item["type"] not in ("message", "pmessage"):
                continue
            return item  # type: ignore[no-any-return]

    async def listen(self) -> AsyncIterator[Dict[str, Any]]:
        """Yields items while anything is subscribed (and what is already
        received after the last unsubscribe)."""
        while self.subscribed or self._items:
            item = await self.get_message(timeout=None if self.subscribed else 0)
            if item is not None:
                yield item

    async def close(self) -> None:
        """Ends every subscription and drops unread items; a ``listen()``
        waiting in another task returns."""
        subs = list(self._subs.values())
        self._subs.clear()
        for sub in subs:
            sub.cancel()
        await asyncio.gather(*(s.task for s in subs if s.task is not None),
                             return_exceptions=True)
        self._items.clear()
        self._room.set()
        self._arrived.set()

    async def __aenter__(self) -> "PubSub":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


async def publish(topic: str, data: Data, *, address: str = DEFAULT_ADDRESS,
                  headers: Optional[Dict[str, str]] = None) -> int:
    """Publishes; returns the live subscriptions reached."""
    request = topic_pb2.PublishRequest(topic=topic, payload=encode_data(data),
                                       headers=headers or {})
    return int((await _call(_stubs(address, security_from())[1].Publish, request)).receivers)
