"""``basin.Producer``: fast, batched, asynchronous puts over one Produce stream.

    with basin.Producer("orders") as producer:
        future = producer.send({"order": 1})      # concurrent.futures.Future
        producer.send({"order": 2})
        producer.flush()                          # every send so far confirmed
        print(future.result())                    # the message's id

Messages are batched by count (5,000), bytes (1 MiB) and ``linger`` (seconds
a message may wait for its batch to fill, 1 ms): larger batches than the C++
SDK's 500, because each request costs gRPC Python about 200 µs of its own.
At most ``max_in_flight_batches`` batches are unconfirmed at once, so a full
queue (the broker stops reading the stream)
blocks ``send()`` once that many are out. A batch never holds more than the
queue can ever take (its ``max_size`` and ``max_bytes``, read at start).

A future's result is the message's id once the broker holds it, or the
typed exception saying why not. A failed message or batch fails its own
futures only. Two errors are permanent, because they are about the queue
itself: :class:`basin.NotFound` and :class:`basin.Closed`: every
unconfirmed and later send fails with it.

Reconnects: when the stream breaks (broker restart, network), the producer
opens a new one and resends every unconfirmed batch unchanged for up to
``reconnect_for`` seconds. Messages are numbered under a random producer
id, and the broker answers a number it already holds with the original id,
so a confirm lost with the connection never enqueues a message twice.

Thread-safe. Callbacks added to the futures run under no producer lock,
mostly on the producer's receiving thread (a callback added to a future
already done runs at once, and a batch refused because the producer
stopped fails in the thread that sealed it). On the receiving thread a
callback may ``send()`` (never waiting for room: the in-flight window
stretches) and ``close()`` (without waiting), but must not wait on a later
message's future, and ``flush()`` there raises RuntimeError. Call ``close()`` (or use ``with``): messages
still batched when the interpreter exits without it are lost. A Producer
belongs to the process that made it (its threads do not survive ``fork``):
make one in each process.

A refusal by the broker that is neither permanent nor a broken connection
(say RESOURCE_EXHAUSTED / TOO_MANY_PRODUCERS) fails the batch it answers; the later unconfirmed
batches are resent on a new stream, after a pause that doubles from 20 ms
to 1 s, as after a break.
"""

from __future__ import annotations

import collections
import threading
import time
import uuid
from concurrent.futures import Future
from typing import Any, Deque, Dict, Iterator, List, Optional, Sequence

import grpc

from . import errors
from . import _forks
from ._connection import (DEFAULT_ADDRESS, ANSWER_SLACK, RETRY_PAUSE_FIRST, RETRY_PAUSE_MAX,
                          Connection, default_connection)
from ._futures import BatchFuture, Group, Outcome, Span, complete
from ._schedule import Delay, When, schedule
from ._wire import put_message, produce_request
from .queues import MAX_BATCH
from .serializers import SerializerSpec, resolve
from .v1 import queue_pb2 as pb

__all__ = ["Producer"]

_PERMANENT = (errors.NotFound, errors.Closed)
PRODUCE_METHOD = "/basin.v1.QueueService/Produce"


def _closed_unconfirmed() -> errors.Error:
    return errors.Error("the producer was closed before the broker confirmed this message",
                        grpc.StatusCode.CANCELLED)


class _Batch:
    __slots__ = ("batch_id", "first_sequence", "frames", "outcome", "nbytes", "opened",
                 "request")

    def __init__(self, opened: float) -> None:
        self.batch_id = 0
        self.first_sequence = 0
        self.frames: List[bytes] = []  # encoded PutMessages (_wire.put_message)
        # Completes the futures of the batch's messages (see _futures).
        self.outcome = Outcome()
        self.nbytes = 0
        self.opened = opened
        self.request: Optional[bytes] = None


class _Stream:
    """One Produce call: the requests it has been given, and whether it died."""

    __slots__ = ("dead", "sent")

    def __init__(self) -> None:
        self.dead = False
        self.sent = 0  # batches of `unconfirmed` yielded on this stream


class Producer:
    """Batched, confirmed, reconnecting puts into one queue (see the module doc)."""

    def __init__(self, queue: str, *, address: str = DEFAULT_ADDRESS, client: Any = None,
                 serializer: SerializerSpec = "pickle", max_batch_messages: int = 5000,
                 max_batch_bytes: int = 1 << 20, linger: float = 0.001,
                 max_in_flight_batches: int = 16, reconnect_for: float = 30.0,
                 close_timeout: float = 5.0) -> None:
        if max_batch_messages < 1 or max_batch_bytes < 1 or max_in_flight_batches < 1:
            raise ValueError("batch limits and max_in_flight_batches must be at least 1")
        if linger < 0 or reconnect_for < 0 or close_timeout < 0:
            raise ValueError("linger, reconnect_for and close_timeout must not be negative")
        self._queue = queue
        self._conn: Connection = client._conn if client is not None else default_connection(
            address)
        self._dumps = resolve(serializer).dumps
        info = self._conn.call(self._conn.queues.GetQueue, pb.GetQueueRequest(name=queue)).queue
        self._max_messages = min(max_batch_messages, MAX_BATCH)
        if info.max_size:
            self._max_messages = min(self._max_messages, int(info.max_size))
        self._max_bytes = max_batch_bytes
        if info.options.max_bytes:
            self._max_bytes = min(self._max_bytes, int(info.options.max_bytes))
        self._linger = linger
        self._max_in_flight = max_in_flight_batches
        self._reconnect_for = reconnect_for
        self._close_timeout = close_timeout
        self._queue_bytes = queue.encode()
        self._producer_id = uuid.uuid4().hex.encode()
        self._forks = _forks.count

        # `_lock` guards the state below; send() takes it directly (cheaper
        # than entering the Condition), waits go through `_cond`.
        self._lock = threading.RLock()  # reentrant: _seal_locked may fail a batch
        self._cond = threading.Condition(self._lock)
        self._open: Optional[_Batch] = None
        # Sealed batches not yet confirmed, in order; the stream sends them
        # from `_Stream.sent` on, and resends all of them after a reconnect.
        self._unconfirmed: Deque[_Batch] = collections.deque()
        self._next_batch_id = 1
        self._next_sequence = 1
        self._done_batch_id = 0  # every batch up to this one is confirmed or failed
        self._permanent: Optional[errors.Error] = None
        self._orphans: List[_Batch] = []  # refused by _seal_locked, to fail
        self._closing = False
        self._stopped = False
        self._stream: Optional[_Stream] = None
        self._call: Any = None
        self._reconnects = 0
        self._receiver = threading.Thread(target=self._run, name=f"basin-producer-{queue}",
                                          daemon=True)
        self._receiver.start()

    # -- sending ---------------------------------------------------------

    def send(self, obj: Any, headers: Optional[Dict[str, str]] = None, *,
             delay: Optional[Delay] = None, deliver_at: Optional[When] = None,
             priority: int = 0, ttl: Optional[Delay] = None,
             group: str = "") -> "Future[int]":
        """Queues ``obj`` for the next batch; the future gives its id.
        ``delay``, ``deliver_at``, ``priority``, ``ttl`` and ``group`` as for
        ``Queue.put``."""
        if _forks.count != self._forks:
            raise RuntimeError("a basin.Producer cannot be used in a forked child: make one there")
        when = (schedule(delay, deliver_at, priority, ttl, group)
                if delay is not None or deliver_at is not None or priority or ttl is not None
                or group else None)
        frame = put_message(self._dumps(obj), headers, when)
        size = len(frame)
        with self._lock:
            # The common case first: a running producer's open batch has room
            # for this message and stays open after it.
            batch = self._open
            if (batch is not None and self._permanent is None and not self._closing
                    and len(batch.frames) < self._max_messages - 1
                    and batch.nbytes + size < self._max_bytes):
                future = BatchFuture(batch.outcome, len(batch.frames))
                batch.frames.append(frame)
                batch.nbytes += size
                return future
        return self._send_slow(frame, size)

    def _send_slow(self, frame: bytes, size: int) -> "Future[int]":
        """send() when a batch must be opened or sealed, or the producer stopped."""
        future: "Future[int]"
        with self._lock:
            if self._permanent is None and not self._closing:
                batch = self._open
                if batch is not None and (len(batch.frames) >= self._max_messages
                                          or batch.nbytes + size > self._max_bytes):
                    self._seal_locked()
                    batch = None
                if self._permanent is None and not self._stopped:
                    if batch is None:
                        batch = self._open = _Batch(time.monotonic())
                        self._cond.notify_all()  # the sender waits for the linger from now
                    future = BatchFuture(batch.outcome, len(batch.frames))
                    batch.frames.append(frame)
                    batch.nbytes += size
                    if (len(batch.frames) >= self._max_messages
                            or batch.nbytes >= self._max_bytes):
                        self._seal_locked()
                    if not self._orphans:
                        return future
        if self._orphans:  # stopped while waiting for room
            self._fail_orphans()
        if self._permanent is None and not self._closing and not self._stopped:
            return future
        refused: "Future[int]" = Future()
        refused.set_exception(self._refusal())
        return refused

    def send_many(self, objs: Sequence[Any], headers: Optional[Dict[str, str]] = None, *,
                  delay: Optional[Delay] = None, deliver_at: Optional[When] = None,
                  priority: int = 0, ttl: Optional[Delay] = None,
                  group: str = "") -> "Future[List[int]]":
        """Sends every object (in order, batched as ``send`` would); one
        future gives the list of their ids. If any fails, the future's
        exception is the first failure, and its ``results`` attribute lists
        each message's id or exception. Cheaper per message than ``send``."""
        if _forks.count != self._forks:
            raise RuntimeError("a basin.Producer cannot be used in a forked child: make one there")
        dumps = self._dumps
        when = (schedule(delay, deliver_at, priority, ttl, group)
                if delay is not None or deliver_at is not None or priority or ttl is not None
                or group else None)
        frames = [put_message(dumps(o), headers, when) for o in objs]
        outcome = Group(len(frames))
        if not frames:
            outcome.resolve()
            return outcome.future
        done = 0
        refused = False
        with self._lock:
            while done < len(frames):
                if self._permanent is not None or self._closing or self._stopped:
                    refused = outcome.fill(done, None, 0, len(frames) - done, self._refusal())
                    break
                batch = self._open
                if batch is None:
                    batch = self._open = _Batch(time.monotonic())
                    self._cond.notify_all()
                # As many of the next frames as fit in this batch (at least one).
                take = min(self._max_messages - len(batch.frames), len(frames) - done)
                part = frames[done:done + take]
                nbytes = sum(map(len, part))
                while take > 1 and batch.nbytes + nbytes > self._max_bytes:
                    take -= 1
                    nbytes -= len(part.pop())
                if take <= 0 or batch.frames and batch.nbytes + nbytes > self._max_bytes:
                    self._seal_locked()
                    continue
                batch.outcome.spans.append(Span(outcome, done, take, len(batch.frames)))
                batch.frames.extend(part)
                batch.nbytes += nbytes
                done += take
                if len(batch.frames) >= self._max_messages or batch.nbytes >= self._max_bytes:
                    self._seal_locked()
        if self._orphans:
            self._fail_orphans()
        if refused:
            outcome.resolve()
        return outcome.future

    def _seal_locked(self, deadline: Optional[float] = None) -> bool:
        """Moves the open batch to the unconfirmed ones, waiting for room
        until ``deadline`` (time.monotonic(); None: as long as it takes).
        False if the deadline passed first: the batch stays open."""
        while (len(self._unconfirmed) >= self._max_in_flight and self._permanent is None
               and not self._stopped):
            if threading.current_thread() is self._receiver:
                # A done-callback sending: only this thread reads confirms,
                # so it must not wait for one. The window stretches instead.
                break
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self._cond.wait(left)
        batch = self._open
        self._open = None
        if batch is None:
            return True
        if self._permanent is not None or self._stopped:
            # Failed by the caller once it lets go of the lock
            # (_fail_orphans): a future's callback must not run under it.
            self._orphans.append(batch)
            self._cond.notify_all()
            return True
        batch.batch_id = self._next_batch_id
        self._next_batch_id += 1
        batch.first_sequence = self._next_sequence
        self._next_sequence += len(batch.frames)
        self._unconfirmed.append(batch)
        self._cond.notify_all()
        return True

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Sends what is batched at once and waits until every message sent
        before the call is confirmed or failed. Returns False if ``timeout``
        passed first. Not from a future's callback (it would wait on itself)."""
        if threading.current_thread() is self._receiver:
            raise RuntimeError("Producer.flush() from a future's callback would wait forever")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if self._open is not None and not self._seal_locked(deadline):
                return False
            target = self._next_batch_id - 1
        if self._orphans:
            self._fail_orphans()
        with self._cond:
            while self._done_batch_id < target:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    # -- the stream ------------------------------------------------------

    def _requests(self, stream: _Stream) -> Iterator[bytes]:
        """The stream's requests: unconfirmed batches in order, sealing the
        open batch when its linger is up; ends (half-close) when closing
        with nothing left to send."""
        while True:
            with self._cond:
                while True:
                    if stream.dead or self._stopped:
                        return
                    if stream.sent < len(self._unconfirmed):
                        batch = self._unconfirmed[stream.sent]
                        stream.sent += 1
                        break
                    batch_open = self._open
                    if batch_open is not None:
                        left: Optional[float] = (batch_open.opened + self._linger
                                                 - time.monotonic())
                        if left is not None and left <= 0 or self._closing:
                            if len(self._unconfirmed) < self._max_in_flight:
                                self._seal_locked()
                                continue
                            left = None  # wait for a confirm to make room
                        self._cond.wait(left)
                        continue
                    if self._closing and not self._unconfirmed:
                        return
                    self._cond.wait()
            if batch.request is None:  # built once, resent unchanged after a reconnect
                batch.request = produce_request(self._queue_bytes, batch.batch_id,
                                                self._producer_id, batch.first_sequence,
                                                batch.frames)
            yield batch.request

    def _run(self) -> None:
        """The receiving thread: opens streams, matches confirms to batches,
        reconnects when a stream breaks."""
        broken_since: Optional[float] = None
        backoff = RETRY_PAUSE_FIRST
        while True:
            with self._cond:
                if self._stopped or (self._closing and not self._unconfirmed
                                     and self._open is None):
                    break
                stream = self._stream = _Stream()
            error: Optional[errors.Error] = None
            head_only = False  # the broker refused the first unconfirmed batch
            try:
                produce = self._conn.channel.stream_stream(
                    PRODUCE_METHOD, request_serializer=None,
                    response_deserializer=pb.ProduceResponse.FromString)
                call = self._call = produce(self._requests(stream))
                for response in call:
                    broken_since = None
                    backoff = RETRY_PAUSE_FIRST
                    self._confirm(response)
                with self._cond:
                    if not (self._closing or self._stopped):
                        # The broker ended the stream without an error: not expected.
                        error = errors.Unavailable("the broker ended the Produce stream")
                    elif self._unconfirmed:  # stopped (close timed out) with batches out
                        error = _closed_unconfirmed()
            except grpc.RpcError as e:
                if self._stopped:
                    break
                if errors.broken(e):
                    now = time.monotonic()
                    broken_since = broken_since or now
                    if now - broken_since < self._reconnect_for:
                        self._restart(stream)
                        # Not at once: a broker that answers UNAVAILABLE while
                        # connected (SHUTTING_DOWN, STORAGE_UNAVAILABLE) must
                        # not make this a busy loop.
                        backoff = self._pause(backoff)
                        self._conn.wait_ready(min(1.0, self._reconnect_for))
                        continue
                elif errors.reason_of(e):
                    # The broker's refusal answers the first unconfirmed batch
                    # and ends the stream; it may hold later batches whose
                    # confirms it dropped: they are resent (deduplicated), not
                    # failed. (An error without a reason, gRPC's own such as a
                    # request above the broker's receive limit, names no
                    # batch: every unconfirmed one fails with it.)
                    head_only = True
                error = errors.from_rpc_error(e)
            except Exception as e:  # noqa: BLE001 (a bug must not hang the futures)
                error = errors.Error(f"producer stream failed: {e!r}")
            with self._cond:
                stream.dead = True
                permanent = error is not None and isinstance(error, _PERMANENT)
                if head_only and not permanent:
                    failed = [self._unconfirmed.popleft()] if self._unconfirmed else []
                else:
                    failed = list(self._unconfirmed)
                    self._unconfirmed.clear()
                if permanent:
                    self._permanent = error
                    if self._open is not None:
                        failed.append(self._open)
                        self._open = None
                self._cond.notify_all()
            if error is not None:
                self._fail_batches(failed, error)
                if not permanent:
                    self._await_work()
                    backoff = self._pause(backoff)
            broken_since = None
        self._finish_stop()

    def _await_work(self) -> None:
        """After a stream failed: the next one opens once there is something
        to send (what is still unconfirmed, or new sends)."""
        with self._cond:
            while not (self._stopped or self._closing or self._unconfirmed
                       or self._open is not None):
                self._cond.wait()
        self._conn.wait_ready(1.0)

    def _pause(self, seconds: float) -> float:
        """Waits before the next stream (a stop, as a close timing out, ends
        the wait); returns the next pause."""
        with self._cond:
            self._cond.wait_for(lambda: self._stopped, timeout=seconds)
        return min(2 * seconds, RETRY_PAUSE_MAX)

    def _restart(self, stream: _Stream) -> None:
        with self._cond:
            stream.dead = True
            self._reconnects += 1
            self._cond.notify_all()

    def _confirm(self, response: pb.ProduceResponse) -> None:
        with self._cond:
            if not self._unconfirmed or self._unconfirmed[0].batch_id != response.batch_id:
                return  # an answer to a batch already failed
            batch = self._unconfirmed.popleft()
            self._stream_sent_dec()
            self._done_batch_id = batch.batch_id
            self._cond.notify_all()
        failures: Optional[Dict[int, BaseException]] = None
        if response.message_count:  # the short confirm: every message enqueued, ids in a row
            first = response.first_message_id
            ids: Sequence[int] = range(first, first + response.message_count)
        else:
            ids = []
            for i, result in enumerate(response.results):
                if result.error_reason:
                    failures = failures or {}
                    failures[i] = errors.from_reason(result.error_reason, result.error_message)
                ids.append(result.message_id)
        complete(batch.outcome, ids, failures)

    def _stream_sent_dec(self) -> None:
        if self._stream is not None and self._stream.sent > 0:
            self._stream.sent -= 1

    def _fail_batches(self, batches: List[_Batch], error: Exception) -> None:
        """Fails every future of ``batches``; called under no lock (futures'
        callbacks run here)."""
        for batch in batches:
            complete(batch.outcome, None, error)
        # An open batch failed with the others has no id yet (0).
        last = max((b.batch_id for b in batches), default=0)
        with self._cond:
            self._done_batch_id = max(self._done_batch_id, last)
            self._cond.notify_all()

    def _refusal(self) -> errors.Error:
        """Why a send is refused or a refused batch fails: the permanent
        error, else the producer is closed."""
        return self._permanent or errors.Error("the producer is closed",
                                               grpc.StatusCode.CANCELLED)

    def _fail_orphans(self) -> None:
        """Fails the batches ``_seal_locked`` refused (see there), now that
        no lock is held."""
        if self._orphans:
            with self._lock:
                orphans, self._orphans = self._orphans, []
            self._fail_batches(orphans, self._refusal())

    def _finish_stop(self) -> None:
        with self._cond:
            self._stopped = True
            left = list(self._unconfirmed)
            self._unconfirmed.clear()
            if self._open is not None:
                left.append(self._open)
                self._open = None
            self._cond.notify_all()
        self._fail_orphans()
        self._fail_batches(left, _closed_unconfirmed())

    # -- closing ---------------------------------------------------------

    @property
    def reconnects(self) -> int:
        """Streams opened after a break."""
        return self._reconnects

    def close(self, timeout: Optional[float] = None) -> None:
        """Sends what is batched, waits up to ``timeout`` (default
        ``close_timeout``) for every confirm, then stops: what is still
        unconfirmed fails with a CANCELLED :class:`basin.Error` (the broker
        may or may not hold those). A second call does nothing."""
        if _forks.count != self._forks:
            return
        wait = self._close_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        with self._cond:
            if self._closing:
                return
            # The stream seals the open batch as soon as there is room (a
            # full queue may give none before the deadline).
            self._closing = True
            self._cond.notify_all()
        if threading.current_thread() is self._receiver:
            return  # from a callback: the stream ends once everything is confirmed
        self._receiver.join(max(0.0, deadline - time.monotonic()))
        if self._receiver.is_alive():
            with self._cond:
                self._stopped = True
                self._cond.notify_all()
            if self._call is not None:
                self._call.cancel()
            self._receiver.join(ANSWER_SLACK)

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

