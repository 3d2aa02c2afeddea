"""``basin.Publisher``: batched pub/sub publishing over one PublishStream.

    with basin.Publisher() as publisher:
        publisher.publish("news.eu", "hello")     # returns at once
        summary = publisher.flush()               # every publish so far confirmed
        print(summary.receivers)

Messages, each to its own topic, are batched by count (5,000), bytes
(1 MiB) and ``linger`` (1 ms); at most ``max_in_flight_batches`` batches
are unconfirmed at once, and ``publish()`` blocks while that many are out
and one more is full.

Publishing is at most once, as Redis PUBLISH is: nothing is resent. A
confirm says the broker routed the message to the subscribers it counted
and to every bound queue; ``flush()`` returns a :class:`PublishSummary` of
the confirms since the previous flush. A message that fails validation
(invalid topic, too large) or that a bound queue refused is listed in
``failures``; the others still go. When the stream ends with an error
(permission denied, rate limited, the broker gone or stopping), every
message not yet confirmed is lost (counted in ``failed``) and the next
``flush()`` raises that error once; the next ``publish()`` opens a new
stream.

Thread-safe. A Publisher belongs to the process that made it: make one in
each process. Call ``close()`` (or use ``with``): messages still batched
when the interpreter exits without it are lost.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, Iterator, List, Optional

import grpc

from . import _forks
from . import errors
from ._connection import DEFAULT_ADDRESS, ANSWER_SLACK, Connection, default_connection
from ._wire import varint
from .pubsub import Data, encode_data
from .queues import MAX_BATCH
from .v1 import topic_pb2 as pb

__all__ = ["Publisher", "PublishFailure", "PublishSummary"]

PUBLISH_STREAM_METHOD = "/basin.v1.TopicService/PublishStream"
_MAX_FAILURES_KEPT = 1000  # per summary
_CONNECT_WAIT = 1.0  # seconds a stream waits for the broker before its messages are lost

# Field tags of PublishStreamRequest (batch_id, messages) and PublishRequest
# (topic, payload): the frames are built by hand, as _wire does for Produce.
_BATCH_ID, _MESSAGES, _TOPIC, _PAYLOAD = b"\x08", b"\x12", b"\x0a", b"\x12"


@dataclass
class PublishFailure:
    """One message that did not go everywhere it matched."""
    topic: str
    error_reason: str = ""   # set when it was not published at all (docs/api.md)
    error_message: str = ""
    undelivered_queues: List[str] = field(default_factory=list)


@dataclass
class PublishSummary:
    """What the broker confirmed since the previous flush."""
    confirmed: int = 0  # messages answered (published or failed validation)
    receivers: int = 0  # subscriber deliveries, summed
    queues: int = 0     # copies into bound queues, summed
    failed: int = 0     # not published: invalid, or lost with a broken stream
    failures: List[PublishFailure] = field(default_factory=list)  # the first 1,000
    failures_unlisted: int = 0  # failures past those listed (by the broker or here)


def _frame(topic: bytes, payload: bytes, headers: Optional[Dict[str, str]]) -> bytes:
    """One entry of PublishStreamRequest.messages, tag and length included."""
    inner: bytes
    if headers:
        inner = pb.PublishRequest(topic=topic.decode(), payload=payload,
                                  headers=headers).SerializeToString()
    else:
        inner = b"".join((_TOPIC, varint(len(topic)), topic,
                          _PAYLOAD, varint(len(payload)), payload) if payload else
                         (_TOPIC, varint(len(topic)), topic))
    return _MESSAGES + varint(len(inner)) + inner


class _Batch:
    __slots__ = ("batch_id", "frames", "topics", "nbytes", "opened")

    def __init__(self, opened: float) -> None:
        self.batch_id = 0
        self.frames: List[bytes] = []
        self.topics: List[str] = []
        self.nbytes = 0
        self.opened = opened


class Publisher:
    """Batched, confirmed publishing (see the module doc)."""

    def __init__(self, address: str = DEFAULT_ADDRESS, *, client: Any = None,
                 max_batch_messages: int = 5000, max_batch_bytes: int = 1 << 20,
                 linger: float = 0.001, max_in_flight_batches: int = 16,
                 close_timeout: float = 5.0) -> None:
        if max_batch_messages < 1 or max_batch_bytes < 1 or max_in_flight_batches < 1:
            raise ValueError("batch limits and max_in_flight_batches must be at least 1")
        if linger < 0 or close_timeout < 0:
            raise ValueError("linger and close_timeout must not be negative")
        self._conn: Connection = client._conn if client is not None else default_connection(
            address)
        self._max_messages = min(max_batch_messages, MAX_BATCH)
        self._max_bytes = max_batch_bytes
        self._linger = linger
        self._max_in_flight = max_in_flight_batches
        self._close_timeout = close_timeout
        self._forks = _forks.count

        self._cond = threading.Condition(threading.Lock())  # guards the state below
        self._open: Optional[_Batch] = None
        self._unconfirmed: Deque[_Batch] = collections.deque()  # sealed, in order
        self._sent = 0  # of `_unconfirmed`, handed to the current stream
        self._stream_number = 0  # the current stream's; an older one's requests stop
        self._next_batch_id = 1
        self._done_batch_id = 0  # every batch up to this one is confirmed or lost
        self._summary = PublishSummary()
        self._error: Optional[errors.Error] = None  # ended a stream since the last flush
        self._closing = False
        self._stopped = False
        self._call: Any = None
        self._thread = threading.Thread(target=self._run, name="basin-publisher", daemon=True)
        self._thread.start()

    def publish(self, topic: str, data: Data, headers: Optional[Dict[str, str]] = None) -> None:
        """Queues ``data`` (bytes, str, or a number as text, as
        ``basin.publish``) for ``topic`` in the next batch."""
        if _forks.count != self._forks:
            raise RuntimeError("a basin.Publisher cannot be used in a forked child: make one there")
        frame = _frame(topic.encode(), encode_data(data), headers)
        with self._cond:
            if self._closing or self._stopped:
                raise errors.Error("the publisher is closed", grpc.StatusCode.CANCELLED)
            batch = self._open
            if batch is None:
                batch = self._open = _Batch(time.monotonic())
                self._cond.notify_all()  # the stream lingers from now
            elif len(batch.frames) >= self._max_messages or (
                    batch.nbytes + len(frame) > self._max_bytes):
                self._seal_locked()
                if self._closing or self._stopped:  # closed while it waited for room
                    raise errors.Error("the publisher is closed", grpc.StatusCode.CANCELLED)
                batch = self._open = _Batch(time.monotonic())
                self._cond.notify_all()
            batch.frames.append(frame)
            batch.topics.append(topic)
            batch.nbytes += len(frame)

    def _seal_locked(self) -> None:
        """Moves the open batch to the unconfirmed ones once there is room."""
        while len(self._unconfirmed) >= self._max_in_flight and not self._stopped:
            self._cond.wait()
        batch, self._open = self._open, None
        if batch is None:
            return
        if self._stopped:  # closed meanwhile: nothing more is sent
            self._summary.failed += len(batch.frames)
            return
        batch.batch_id = self._next_batch_id
        self._next_batch_id += 1
        self._unconfirmed.append(batch)
        self._cond.notify_all()

    def flush(self, timeout: Optional[float] = None) -> PublishSummary:
        """Sends what is batched at once, waits until every message published
        before the call is confirmed or lost, and returns the summary since
        the previous flush. Raises the error that ended a stream meanwhile
        (once), or :class:`basin.Error` (DEADLINE_EXCEEDED) if ``timeout``
        passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if self._open is not None:
                self._seal_locked()
            target = self._next_batch_id - 1
            while self._done_batch_id < target:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise errors.Error("flush timed out", grpc.StatusCode.DEADLINE_EXCEEDED)
                self._cond.wait(left)
            summary, self._summary = self._summary, PublishSummary()
            error, self._error = self._error, None
        if error is not None:
            raise error
        return summary

    # -- the stream ------------------------------------------------------

    def _requests(self, number: int) -> Iterator[bytes]:
        """Unconfirmed batches in order, sealing the open batch when its
        linger is up; ends when closing with nothing left to send, or when
        stream ``number`` is no longer the current one (gRPC may still be
        reading a dead stream's requests)."""
        while True:
            with self._cond:
                while True:
                    if self._stopped or number != self._stream_number:
                        return
                    if self._sent < len(self._unconfirmed):
                        batch = self._unconfirmed[self._sent]
                        self._sent += 1
                        break
                    if self._open is not None:
                        left: Optional[float] = self._open.opened + self._linger - time.monotonic()
                        if left is not None and left <= 0 or self._closing:
                            if len(self._unconfirmed) < self._max_in_flight:
                                self._seal_locked()
                                continue
                            left = None  # a confirm makes room
                        self._cond.wait(left)
                        continue
                    if self._closing and not self._unconfirmed:
                        return
                    self._cond.wait()
            yield b"".join((_BATCH_ID, varint(batch.batch_id), *batch.frames))

    def _run(self) -> None:
        """Opens a stream when there is work, reads its confirms, and counts
        what was unconfirmed as lost when it ends."""
        stream = self._conn.channel.stream_stream(
            PUBLISH_STREAM_METHOD, request_serializer=None,
            response_deserializer=pb.PublishStreamResponse.FromString)
        while True:
            with self._cond:
                while not (self._stopped or self._closing or self._unconfirmed
                           or self._open is not None):
                    self._cond.wait()
                if self._stopped or (self._closing and not self._unconfirmed
                                     and self._open is None):
                    break
                self._sent = 0
                self._stream_number += 1
                number = self._stream_number
            error: Optional[errors.Error] = None
            # A stream opened while the channel is down waits (gRPC Python)
            # instead of failing: learn first whether the broker is there.
            if not self._conn.wait_ready(_CONNECT_WAIT):
                with self._cond:
                    self._stream_number += 1
                self._lose_all(errors.Unavailable(
                    f"cannot reach the broker at {self._conn.address}"))
                continue
            try:
                call = self._call = stream(self._requests(number))
                for response in call:
                    self._confirm(response)
                with self._cond:
                    if self._unconfirmed:
                        error = errors.Unavailable("the broker ended the PublishStream")
            except grpc.RpcError as e:
                error = errors.from_rpc_error(e)
            except Exception as e:  # noqa: BLE001 (a bug must not hang flush())
                error = errors.Error(f"publish stream failed: {e!r}")
            with self._cond:
                self._stream_number += 1  # its requests end
                self._cond.notify_all()
            if error is not None:
                self._lose_all(error)
                with self._cond:  # a broker that refuses at once must not make a busy loop
                    self._cond.wait_for(lambda: self._stopped, timeout=0.05)
        self._lose_all(None)

    def _confirm(self, response: pb.PublishStreamResponse) -> None:
        with self._cond:
            if not self._unconfirmed or self._unconfirmed[0].batch_id != response.batch_id:
                return
            batch = self._unconfirmed.popleft()
            self._sent -= 1
            s = self._summary
            s.confirmed += len(batch.frames)
            s.receivers += response.receivers
            s.queues += response.queues
            s.failed += response.failed
            s.failures_unlisted += response.failures_omitted
            for f in response.failures:
                if len(s.failures) >= _MAX_FAILURES_KEPT:
                    s.failures_unlisted += 1
                else:
                    topic = batch.topics[f.index] if f.index < len(batch.topics) else ""
                    s.failures.append(PublishFailure(topic, f.error_reason, f.error_message,
                                                     list(f.undelivered_queues)))
            self._done_batch_id = batch.batch_id
            self._cond.notify_all()

    def _lose_all(self, error: Optional[errors.Error]) -> None:
        """Every unconfirmed message, sent or still open, is lost with
        ``error`` (None: the publisher stopped)."""
        with self._cond:
            lost = sum(len(b.frames) for b in self._unconfirmed)
            if self._unconfirmed:
                self._done_batch_id = self._unconfirmed[-1].batch_id
            self._unconfirmed.clear()
            self._sent = 0
            if self._open is not None:
                lost += len(self._open.frames)
                self._open = None
            self._summary.failed += lost
            if lost and self._error is None:
                self._error = error or errors.Error(
                    "the publisher was closed before the broker confirmed these messages",
                    grpc.StatusCode.CANCELLED)
            self._cond.notify_all()

    # -- closing ---------------------------------------------------------

    def close(self, timeout: Optional[float] = None) -> None:
        """Sends what is batched and waits up to ``timeout`` (default
        ``close_timeout``) for the confirms, then stops. A second call does
        nothing."""
        if _forks.count != self._forks:
            return
        wait = self._close_timeout if timeout is None else timeout
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        self._thread.join(wait)
        if self._thread.is_alive():
            with self._cond:
                self._stopped = True
                self._cond.notify_all()
            if self._call is not None:
                self._call.cancel()
            self._thread.join(ANSWER_SLACK)

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
