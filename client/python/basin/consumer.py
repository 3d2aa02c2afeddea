"""``basin.Consumer``: fast consumption over one Consume stream.

    with basin.Consumer("orders", prefetch=500) as consumer:
        for msg in consumer:            # ends once the queue is closed and drained
            process(msg.value)
            msg.ack()                   # task_done, sent in batches

The broker never has more than ``prefetch`` unacknowledged messages out to
this consumer, and the stream holds their leases: nothing is redelivered
while the consumer is connected, unless ``ack_timeout`` (seconds) is set.
When the consumer is closed, cancelled or disconnected, every message it
holds and did not ack goes back to the head of the queue at once. Acks are
sent when ``ack_batch`` of them wait, before the consumer waits for more
messages, and by ``flush()`` and ``close()``.

Reconnects: when the stream breaks (the broker restarted, the network
dropped) the consumer opens a new one, for up to ``reconnect_for``
seconds. The broker requeued what the old stream held, so those messages
come again (delivery count + 1); acking one received before the break does
nothing. Processing must therefore be idempotent: at least once, as with any
broker.

One thread at a time may take messages; acks, releases and ``cancel()``
may come from any thread. A Consumer belongs to the process that made it: make one in each.
"""

from __future__ import annotations

import collections
import os
import queue as stdqueue
import threading
import time
from typing import Any, Deque, Iterator, List, Optional, Tuple

import grpc

from . import errors
from ._connection import (DEFAULT_ADDRESS, RETRY_PAUSE_FIRST, RETRY_PAUSE_MAX, Connection,
                          clamp_timeout, default_connection, duration)
from ._schedule import Delay, release_fields
from .message import ColumnMessage, Message, from_columns
from .serializers import SerializerSpec, resolve
from .v1 import queue_pb2 as pb

__all__ = ["Consumer", "MessageBatch"]

# The broker's limit on tags in one list of a ConsumeRequest.
_MAX_TAGS = 10_000

_END = object()


class _Stream:
    """One Consume call: its number, its outgoing requests, its call object."""

    __slots__ = ("number", "requests", "call")

    def __init__(self, number: int) -> None:
        self.number = number
        self.requests: "stdqueue.SimpleQueue[Optional[pb.ConsumeRequest]]" = \
            stdqueue.SimpleQueue()
        self.call: Any = None


class Consumer:
    """Prefetching, batched-ack, reconnecting consumer of one queue (see the module doc)."""

    def __init__(self, queue: str, *, address: str = DEFAULT_ADDRESS, client: Any = None,
                 serializer: SerializerSpec = "pickle", prefetch: int = 100,
                 ack_timeout: Optional[float] = None, ack_batch: int = 64,
                 reconnect_for: float = 30.0, close_timeout: float = 5.0) -> None:
        if not 1 <= prefetch <= 10_000:
            raise ValueError("prefetch must be 1 to 10,000")
        if ack_batch < 1:
            raise ValueError("ack_batch must be at least 1")
        if ack_timeout is not None and ack_timeout <= 0:
            raise ValueError("ack_timeout must be positive")
        self._queue = queue
        self._conn: Connection = client._conn if client is not None else default_connection(
            address)
        self._serializer = resolve(serializer)
        self._prefetch = prefetch
        self._ack_timeout = ack_timeout
        self._ack_batch = ack_batch
        self._reconnect_for = reconnect_for
        self._close_timeout = close_timeout
        self._pid = os.getpid()

        self._lock = threading.Lock()
        # Responses and the end of the stream, from the receiving thread. It
        # holds at most `prefetch` deliveries not yet taken (`_room`): with
        # an ack_timeout the broker sends more as leases expire, and a
        # stalled program must make it wait, not grow this process.
        self._inbox: "stdqueue.SimpleQueue[Any]" = stdqueue.SimpleQueue()
        self._room = threading.Condition()
        self._inbox_deliveries = 0
        self._ready: Deque[Message] = collections.deque()
        # Acks not sent yet: (the stream whose delivery tags they are, the
        # tags). Workers may ack from several threads without a lock: a
        # deque's append is atomic, a flush takes what is there one by one,
        # and a new stream gets a new box (what is left in the old one is
        # void: the broker requeued those deliveries).
        self._acks: Tuple[int, Deque[int]] = (0, collections.deque())
        self._flush_lock = threading.Lock()
        self._waiting = False  # the taking thread waits for the inbox
        self._half_closed = False  # close() ended the stream's requests
        self._stream: Optional[_Stream] = None
        self._stream_number = 0
        self._ended: Optional[BaseException] = None  # why no more messages come
        self._cancelled = False
        self._closing = False
        self._expired = 0
        self._reconnects = 0
        # A wrong queue name or a broker that is down fails the constructor
        # rather than the first get.
        self._conn.call(self._conn.queues.GetQueue, pb.GetQueueRequest(name=queue))
        first = self._open_stream()
        assert first is not None
        self._receiver = threading.Thread(target=self._run, args=(first,),
                                          name=f"basin-consumer-{queue}", daemon=True)
        self._receiver.start()

    # -- the stream (receiving thread) -----------------------------------

    def _open_stream(self) -> Optional[_Stream]:
        """A new Consume stream, or None when the consumer is closing."""
        with self._lock:
            if self._cancelled or self._closing:
                return None
            self._stream_number += 1
            stream = _Stream(self._stream_number)
            self._stream = stream
        hello = pb.ConsumeRequest(queue=self._queue, prefetch=self._prefetch, columns=True)
        if self._ack_timeout is not None:
            hello.ack_timeout.CopyFrom(duration(self._ack_timeout))
        stream.requests.put(hello)
        stream.call = self._conn.queues.Consume(self._requests(stream))
        # cancel() may have run between the check and the call: it found
        # no call to cancel, so this does it.
        if self._cancelled:
            stream.call.cancel()
        return stream

    @staticmethod
    def _requests(stream: _Stream) -> Iterator[pb.ConsumeRequest]:
        while True:
            request = stream.requests.get()
            if request is None:
                return
            yield request

    def _run(self, stream: _Stream) -> None:
        broken_since: Optional[float] = None
        backoff = RETRY_PAUSE_FIRST
        while True:
            end: BaseException
            try:
                for response in stream.call:
                    broken_since = None
                    backoff = RETRY_PAUSE_FIRST
                    self._hold(len(response.columns.delivery_tags))
                    self._inbox.put((stream.number, response))
                end = errors.Closed("the consumer's stream ended",
                                    grpc.StatusCode.CANCELLED)
            except grpc.RpcError as e:
                if not (self._cancelled or self._closing) and errors.broken(e):
                    now = time.monotonic()
                    broken_since = broken_since or now
                    if now - broken_since < self._reconnect_for:
                        stream.requests.put(None)
                        # Not at once: a broker answering UNAVAILABLE while
                        # connected (SHUTTING_DOWN) must not make this spin.
                        with self._room:
                            self._room.wait_for(lambda: self._cancelled or self._closing,
                                                timeout=backoff)
                        backoff = min(2 * backoff, RETRY_PAUSE_MAX)
                        self._conn.wait_ready(min(1.0, self._reconnect_for))
                        with self._lock:
                            self._reconnects += 1
                        try:
                            reopened = self._open_stream()
                        except grpc.RpcError as again:
                            end = errors.from_rpc_error(again)
                            break
                        if reopened is not None:
                            stream = reopened
                            continue
                end = errors.from_rpc_error(e)
            except Exception as e:  # noqa: BLE001 (a bug must not hang get())
                end = errors.Error(f"consumer stream failed: {e!r}")
            if self._cancelled or self._closing:
                end = errors.Closed("the consumer was cancelled", grpc.StatusCode.CANCELLED)
            break
        stream.requests.put(None)
        self._inbox.put((_END, end))

    def _hold(self, count: int) -> None:
        """Counts a received response's deliveries into the inbox, waiting
        first while they would take it past `prefetch` (a response never
        holds more than `prefetch`), unless the consumer is closing (then the
        stream is read to its end, so the acks sent before the half-close
        are applied)."""
        with self._room:
            while (self._inbox_deliveries and self._inbox_deliveries + count > self._prefetch
                   and not (self._cancelled or self._closing)):
                self._room.wait()
            self._inbox_deliveries += count

    # -- taking messages -------------------------------------------------

    def get(self, timeout: Optional[float] = None) -> Message:
        """The next message, waiting up to ``timeout`` seconds (None: as long
        as it takes) then :class:`basin.Empty`. :class:`basin.Closed` once
        the queue is closed and drained (or after ``close``/``cancel``),
        :class:`basin.NotFound` if it is deleted."""
        if not self._ready:
            self._refill(clamp_timeout(timeout))
        return self._ready.popleft()

    def _refill(self, timeout: Optional[float]) -> None:
        """Waits for deliveries (sending the pending acks first)."""
        number, columns = self._next_deliveries(timeout)
        self._ready.extend(from_columns(ColumnMessage, self._queue, columns, self,
                                        self._serializer, number))

    def _next_deliveries(self, timeout: Optional[float]) -> Tuple[int, Any]:
        """The next response's deliveries on the current stream (sending the
        pending acks first): (stream number, DeliveryColumns)."""
        if os.getpid() != self._pid:
            raise RuntimeError("a basin.Consumer cannot be used in a forked child: make one there")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._ended is not None:
                raise self._ended
            # While this thread waits, an ack from another thread is sent at
            # once (see _finish_tag): the flag is raised before the flush, so
            # an ack either goes with the flush or sees the flag.
            self._waiting = True
            try:
                self.flush()
                number, response = self._inbox.get(
                    timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
            except stdqueue.Empty:
                raise errors.Empty(f"no message from {self._queue!r} within {timeout} s",
                                   grpc.StatusCode.DEADLINE_EXCEEDED, "QUEUE_EMPTY") from None
            finally:
                self._waiting = False
            if number is _END:
                self._ended = response
                continue
            columns = response.columns
            count = len(columns.delivery_tags)
            if count:
                with self._room:
                    self._inbox_deliveries -= count
                    self._room.notify()
            if self._stream is None or number != self._stream.number:
                continue  # from a stream that broke: those messages were requeued
            self._expired += len(response.expired)
            if count:
                return number, columns

    def get_batch(self, timeout: Optional[float] = None) -> "MessageBatch":
        """The messages that arrived together (up to the broker's 4,096 per
        response, or what ``get`` left), waiting as ``get`` does. Cheaper per
        message than ``get``: values come as a list, one ``ack()`` for all."""
        if self._ready:
            left = list(self._ready)
            self._ready.clear()
            return MessageBatch(self, left[0]._stream, None, left)
        number, columns = self._next_deliveries(clamp_timeout(timeout))
        return MessageBatch(self, number, columns, None)

    def batches(self) -> Iterator["MessageBatch"]:
        """Yields ``get_batch()`` until the queue is closed and drained, or the
        consumer is closed or cancelled."""
        while True:
            try:
                yield self.get_batch()
            except errors.Closed:
                return

    def _ack_tags(self, stream: int, tags: Any) -> None:
        if stream != self._stream_number or self._ended is not None:
            return
        pending = self._acks_for(stream)
        pending.extend(tags)
        if len(pending) >= self._ack_batch or self._waiting:
            self.flush()

    def _acks_for(self, stream: int) -> Deque[int]:
        """The pending acks of `stream` (the current one)."""
        box = self._acks
        if box[0] != stream:
            with self._flush_lock:
                box = self._acks
                if box[0] < stream:
                    box = self._acks = (stream, collections.deque())
                elif box[0] > stream:
                    # An ack of a stream that broke, late: void, and it must
                    # not displace the new stream's acks.
                    return collections.deque()
        return box[1]

    def __iter__(self) -> Iterator[Message]:
        """Yields messages until the queue is closed and drained, or the
        consumer is closed or cancelled."""
        ready = self._ready
        while True:
            while ready:
                yield ready.popleft()
            try:
                self._refill(None)
            except errors.Closed:
                return

    # -- acks, releases, extensions ---------------------------------------

    def _current(self, message: Message) -> Optional[_Stream]:
        if message._source is not self:
            raise ValueError(f"{message!r} was not delivered by this Consumer")
        stream = self._stream
        if stream is None or stream.number != message._stream or self._ended is not None:
            return None  # its stream is gone: the broker requeued it
        return stream

    def ack(self, message: Message) -> None:
        """Finishes the message (task_done); sent in batches."""
        if message._source is not self:
            raise ValueError(f"{message!r} was not delivered by this Consumer")
        self._finish(message)

    def _finish(self, message: Message) -> None:
        self._finish_tag(message._stream, message._tag)

    def _finish_tag(self, stream: int, tag: int) -> None:
        # The hot path of msg.ack(): the message is this consumer's.
        if stream != self._stream_number or self._ended is not None:
            return  # its stream is gone: the broker requeued it
        box = self._acks
        pending = box[1] if box[0] == stream else self._acks_for(stream)
        pending.append(tag)
        if len(pending) >= self._ack_batch or self._waiting:
            self.flush()

    def _release(self, message: Message, delay: Optional[Delay] = None) -> None:
        fields = release_fields(delay, "release_delay")
        stream = self._current(message)
        if stream is not None:
            self.flush()
            stream.requests.put(pb.ConsumeRequest(releases=[message._tag], **fields))

    def _reject(self, message: Message) -> None:
        stream = self._current(message)
        if stream is not None:
            self.flush()
            stream.requests.put(pb.ConsumeRequest(rejects=[message._tag]))

    def _extend(self, message: Message, seconds: Optional[float]) -> None:
        if seconds is not None:
            raise ValueError("a Consumer's message is extended by its ack_timeout; "
                             "call extend() without seconds")
        stream = self._current(message)
        if stream is not None:
            stream.requests.put(pb.ConsumeRequest(extends=[message._tag]))

    def flush(self) -> None:
        """Sends the pending acks now."""
        acks_stream, pending = self._acks
        if not pending:
            return
        # One flush at a time takes from the deque and queues the requests,
        # and close() queues its half-close under the same lock: no ack is
        # queued after it.
        with self._flush_lock:
            acks = [pending.popleft() for _ in range(len(pending))]
            stream = self._stream
            # Tags name deliveries of one stream: after a reconnect, the acks
            # pending for the old one are void (the broker requeued those).
            if (acks and stream is not None and stream.number == acks_stream
                    and self._ended is None and not self._half_closed):
                for i in range(0, len(acks), _MAX_TAGS):  # the broker's limit per list
                    stream.requests.put(pb.ConsumeRequest(acks=acks[i:i + _MAX_TAGS]))

    # -- ending ----------------------------------------------------------

    @property
    def expired(self) -> int:
        """Deliveries whose ack_timeout passed (they went back to the queue)."""
        return self._expired

    @property
    def reconnects(self) -> int:
        """Streams opened after a break."""
        return self._reconnects

    def close(self) -> None:
        """Sends pending acks, ends the stream and waits (up to
        close_timeout, then cancels) for the broker to end it: the acks are
        applied before what the stream still holds goes back to the queue.
        Afterwards ``get`` raises :class:`basin.Closed`. A second call does nothing."""
        if self._closing or os.getpid() != self._pid:
            return
        self.flush()
        with self._lock:  # _open_stream opens no stream after this
            self._closing = True
            stream = self._stream
        with self._room:
            self._room.notify_all()  # a receiver waiting for room reads on
        if stream is not None:
            with self._flush_lock:
                self._half_closed = True
                stream.requests.put(None)  # half-close: the broker ends the stream
        self._receiver.join(self._close_timeout)
        if self._receiver.is_alive():
            with self._lock:
                stream = self._stream
            if stream is not None and stream.call is not None:
                stream.call.cancel()
            self._receiver.join(self._close_timeout)
        self._ended = errors.Closed("the consumer is closed", grpc.StatusCode.CANCELLED)
        self._ready.clear()

    def cancel(self) -> None:
        """Ends the stream at once, from any thread; ``get`` then raises
        :class:`basin.Closed` (and iteration stops). Acks not yet sent are
        lost (their messages come again)."""
        with self._lock:  # _open_stream opens no stream after this
            self._cancelled = True
            stream = self._stream
        with self._room:
            self._room.notify_all()
        if stream is not None and stream.call is not None:
            stream.call.cancel()

    def __enter__(self) -> "Consumer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()



class MessageBatch:
    """Messages a Consumer received together: ``values`` (decoded),
    ``payloads`` (bytes), ``messages`` (Message objects, made on first use),
    one ``ack()`` for all. Iterating yields the values."""

    __slots__ = ("_consumer", "_stream", "_columns", "_messages", "_payloads")

    def __init__(self, consumer: Consumer, stream: int, columns: Any,
                 messages: Optional[List[Message]]) -> None:
        self._consumer = consumer
        self._stream = stream
        self._columns = columns  # a DeliveryColumns, or None with `messages`
        self._messages = messages
        self._payloads: Optional[List[bytes]] = None

    def __len__(self) -> int:
        return len(self._messages if self._messages is not None
                   else self._columns.delivery_tags)

    @property
    def payloads(self) -> List[bytes]:
        if self._payloads is None:
            if self._messages is not None:
                self._payloads = [m.payload for m in self._messages]
            else:
                self._payloads = list(self._columns.payloads)
        return self._payloads

    @property
    def values(self) -> List[Any]:
        serializer = self._consumer._serializer
        if serializer.name == "bytes":
            return self.payloads
        loads = serializer.loads
        return [loads(p) for p in self.payloads]

    @property
    def messages(self) -> List[Message]:
        if self._messages is None:
            c = self._consumer
            self._messages = list(from_columns(ColumnMessage, c._queue, self._columns, c,
                                               c._serializer, self._stream))
        return self._messages

    def __iter__(self) -> Iterator[Any]:
        return iter(self.values)

    def _tags(self) -> Any:
        if self._messages is not None:
            return [m._tag for m in self._messages]
        tags = self._columns.delivery_tags
        first, last = tags[0], tags[-1]
        if last - first + 1 == len(tags):  # tags are consecutive on a stream
            return range(first, last + 1)
        return list(tags)

    def ack(self) -> None:
        """Finishes every message of the batch (sent with the consumer's acks)."""
        self._consumer._ack_tags(self._stream, self._tags())

    def release(self, delay: Optional[Delay] = None) -> None:
        """Gives every message of the batch back to the head of the queue
        (after ``delay``, or the queue's retry_backoff, as Message.release)."""
        fields = release_fields(delay, "release_delay")
        c = self._consumer
        if self._stream == c._stream_number and c._ended is None and c._stream is not None:
            c.flush()
            c._stream.requests.put(pb.ConsumeRequest(releases=list(self._tags()), **fields))
