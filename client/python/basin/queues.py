"""``basin.Queue`` and ``basin.JoinableQueue``: multiprocessing's queues, on a broker.

    q = basin.JoinableQueue("orders", 3)        # was: JoinableQueue(3)
    q.put(obj)                                  # blocks while 3 are waiting
    obj = q.get()                               # blocks while empty
    q.task_done()
    q.join()                                    # until every put is done
    q.close_queue()                             # end of stream: drained gets raise Closed

The object names a queue on the broker, so any process on any machine that
constructs one with the same name shares it. The constructor creates the
queue if it does not exist and attaches to it if it does; settings given
explicitly must match the existing queue's (``AlreadyExists`` otherwise),
settings left at their defaults never conflict.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import grpc

from . import errors
from ._connection import DEFAULT_ADDRESS, Connection, default_connection, duration
from ._schedule import Delay, When, duration_of, release_fields, schedule, seconds_of
from .message import Message
from .serializers import Serializer, SerializerSpec, resolve
from .v1 import queue_pb2 as pb

__all__ = ["Queue", "JoinableQueue", "MAX_BATCH"]

# The broker's cap on messages in one request.
MAX_BATCH = 10_000


def _seconds(d: Any) -> float:
    return float(d.seconds) + float(d.nanos) / 1e9


def wanted_settings(maxsize: int, durable: Optional[bool],
                    visibility_timeout: Optional[float], max_deliveries: Optional[int],
                    dead_letter_queue: Optional[str],
                    max_bytes: Optional[int],
                    retry_backoff: Optional[Sequence[Delay]] = None,
                    message_ttl: Optional[Delay] = None,
                    max_priority: Optional[int] = None) -> Dict[str, Any]:
    """The settings given explicitly (the others never conflict)."""
    wanted: Dict[str, Any] = {}
    if maxsize > 0:
        wanted["maxsize"] = int(maxsize)
    if durable is not None:
        wanted["durable"] = bool(durable)
    if visibility_timeout is not None:
        if visibility_timeout <= 0:
            raise ValueError("visibility_timeout must be positive")
        wanted["visibility_timeout"] = float(visibility_timeout)
    if max_deliveries is not None:
        wanted["max_deliveries"] = int(max_deliveries)
    if dead_letter_queue is not None:
        wanted["dead_letter_queue"] = dead_letter_queue
    if max_bytes is not None:
        wanted["max_bytes"] = int(max_bytes)
    if retry_backoff is not None:
        wanted["retry_backoff"] = [round(seconds_of(d, "retry_backoff"), 3) for d in retry_backoff]
    if message_ttl is not None:
        wanted["message_ttl"] = round(seconds_of(message_ttl, "message_ttl"), 3)
    if max_priority is not None:
        wanted["max_priority"] = int(max_priority)
    return wanted


def create_request(name: str, wanted: Dict[str, Any]) -> pb.CreateQueueRequest:
    """CreateQueue with the given settings and the broker's defaults for the rest."""
    options = pb.QueueOptions(max_deliveries=wanted.get("max_deliveries", 0),
                              dead_letter_queue=wanted.get("dead_letter_queue", ""),
                              max_bytes=wanted.get("max_bytes", 0),
                              durable=wanted.get("durable", False))
    if "visibility_timeout" in wanted:
        options.visibility_timeout.CopyFrom(duration(wanted["visibility_timeout"]))
    for d in wanted.get("retry_backoff", []):
        options.retry_backoff.append(duration_of(d))
    if wanted.get("message_ttl"):
        options.message_ttl.CopyFrom(duration_of(wanted["message_ttl"]))
    options.max_priority = wanted.get("max_priority", 0)
    return pb.CreateQueueRequest(name=name, max_size=wanted.get("maxsize", 0), options=options)


def check_settings(name: str, info: Any, wanted: Dict[str, Any]) -> None:
    """AlreadyExists unless the existing queue has every wanted setting."""
    have = {
        "maxsize": int(info.max_size),
        "durable": bool(info.options.durable),
        "visibility_timeout": _seconds(info.options.visibility_timeout),
        "max_deliveries": int(info.options.max_deliveries),
        "dead_letter_queue": info.options.dead_letter_queue,
        "max_bytes": int(info.options.max_bytes),
        "retry_backoff": [round(_seconds(d), 3) for d in info.options.retry_backoff],
        "message_ttl": round(_seconds(info.options.message_ttl), 3),
        "max_priority": int(info.options.max_priority),
    }
    differ = [f"{k}={have[k]!r} (asked for {v!r})" for k, v in wanted.items()
              if (abs(have[k] - v) > 1e-3 if k == "visibility_timeout" else have[k] != v)]
    if differ:
        raise errors.AlreadyExists(f"queue {name!r} exists with " + ", ".join(differ),
                                   grpc.StatusCode.ALREADY_EXISTS, "QUEUE_EXISTS")


class Queue:
    """A named bounded queue on a Basin broker, with ``multiprocessing.Queue``'s methods.

    ``get`` finishes each message as it hands it out (there is no
    ``task_done``): use :class:`JoinableQueue` when consumers must say when
    an item is processed, so that nothing is lost if they die and ``join``
    can wait for them.

    Arguments beyond the standard library's ``maxsize`` (``<= 0``:
    unbounded) are keyword-only: ``address`` (``host:port``), the queue's
    settings (``durable``, ``visibility_timeout`` seconds, ``max_deliveries``,
    ``dead_letter_queue``, ``max_bytes``, ``retry_backoff``: a list of
    seconds or timedeltas a released or expired message waits before it is
    ready again, by delivery count, the last repeating; ``message_ttl``:
    seconds or a timedelta a message lives unless its put says otherwise;
    ``max_priority``: 1 to 10 priority levels), ``serializer`` ("pickle", "json",
    "bytes" or a ``(dumps, loads)`` pair) and ``client`` (a
    :class:`basin.Client` whose connection to share).
    """

    _joinable = False

    def __init__(self, name: str, maxsize: int = 0, *, address: str = DEFAULT_ADDRESS,
                 durable: Optional[bool] = None, visibility_timeout: Optional[float] = None,
                 max_deliveries: Optional[int] = None, dead_letter_queue: Optional[str] = None,
                 max_bytes: Optional[int] = None,
                 retry_backoff: Optional[Sequence[Delay]] = None,
                 message_ttl: Optional[Delay] = None, max_priority: Optional[int] = None,
                 serializer: SerializerSpec = "pickle", client: Any = None) -> None:
        self._name = name
        self._conn: Connection = client._conn if client is not None else default_connection(
            address)
        self._serializer_spec = serializer
        self._serializer: Serializer = resolve(serializer)
        self._closed = False
        self._lock = threading.Lock()
        self._pid = os.getpid()
        # Deliveries handed out by this object and not finished, oldest first
        # (tag -> Message): task_done() without an argument finishes the first.
        self._outstanding: Dict[str, Message] = {}
        self._attach(maxsize, durable, visibility_timeout, max_deliveries, dead_letter_queue,
                     max_bytes, retry_backoff, message_ttl, max_priority)

    # -- attaching -------------------------------------------------------

    def _attach(self, maxsize: int, durable: Optional[bool],
                visibility_timeout: Optional[float], max_deliveries: Optional[int],
                dead_letter_queue: Optional[str], max_bytes: Optional[int],
                retry_backoff: Optional[Sequence[Delay]], message_ttl: Optional[Delay],
                max_priority: Optional[int]) -> None:
        wanted = wanted_settings(maxsize, durable, visibility_timeout, max_deliveries,
                                 dead_letter_queue, max_bytes, retry_backoff, message_ttl,
                                 max_priority)
        try:
            info = self._info()
        except errors.NotFound:
            try:
                info = self._conn.call(self._conn.queues.CreateQueue,
                                       create_request(self._name, wanted)).queue
            except errors.AlreadyExists:
                # Another process created it meanwhile, with other settings:
                # only the settings given here must agree.
                info = self._info()
        check_settings(self._name, info, wanted)

    def __reduce__(self) -> Tuple[Any, ...]:
        # For the spawn and forkserver start methods: the child attaches by
        # name (the queue exists) and opens its own channel.
        return (_rebuild, (type(self), self._name, self._conn.address, self._serializer_spec))

    # -- state of this object in this process ----------------------------

    def _local(self) -> Dict[str, Message]:
        """This process's unfinished deliveries (a forked child starts with none:
        the parent's deliveries are the parent's to finish)."""
        pid = os.getpid()
        if self._pid != pid:
            with self._lock:
                if self._pid != pid:
                    self._outstanding = {}
                    self._pid = pid
        return self._outstanding

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")

    @property
    def name(self) -> str:
        """The queue's name on the broker."""
        return self._name

    @property
    def address(self) -> str:
        """The broker's address."""
        return self._conn.address

    def __repr__(self) -> str:
        return f"<basin.{type(self).__name__} {self._name!r} at {self._conn.address}>"

    # -- put -------------------------------------------------------------

    def put(self, obj: Any, block: bool = True, timeout: Optional[float] = None, *,
            delay: Optional[Delay] = None, deliver_at: Optional[When] = None,
            priority: int = 0, ttl: Optional[Delay] = None,
            group: str = "") -> None:
        """Puts ``obj``, waiting while the queue is full (up to ``timeout``
        seconds, then :class:`basin.Full`; ``block=False``: not at all).
        With ``delay`` (seconds or a timedelta) or ``deliver_at`` (a datetime
        or epoch seconds) no get sees it before then; it counts as
        unfinished meanwhile, and takes a place in a bounded queue only once
        it is ready. ``priority`` (0 to 10) orders a queue made with
        ``max_priority``; ``ttl`` (seconds or a timedelta) is how long the
        message lives, instead of the queue's ``message_ttl``."""
        self._check_open()
        payload = self._serializer.dumps(obj)
        name = self._name
        when = schedule(delay, deliver_at, priority, ttl, group)
        self._conn.wait_call(
            self._conn.queues.Put,
            lambda wait: pb.PutRequest(queue=name, payload=payload, timeout=wait, **when),
            block, timeout, errors.Full)

    def put_nowait(self, obj: Any) -> None:
        """``put(obj, False)``."""
        self.put(obj, False)

    def put_many(self, objs: Iterable[Any], block: bool = True,
                 timeout: Optional[float] = None, *, delay: Optional[Delay] = None,
                 deliver_at: Optional[When] = None, priority: int = 0,
                 ttl: Optional[Delay] = None, group: str = "") -> List[int]:
        """Puts every object in one request, all or nothing (waiting until
        all fit; more than 10,000 is a ValueError). Returns their ids.
        ``delay``, ``deliver_at``, ``priority`` and ``ttl``, as for ``put``,
        apply to each."""
        self._check_open()
        dumps = self._serializer.dumps
        when = schedule(delay, deliver_at, priority, ttl, group)
        messages = [pb.PutMessage(payload=dumps(o), **when) for o in objs]
        if not messages:
            return []
        if len(messages) > MAX_BATCH:
            raise ValueError(f"put_many takes at most {MAX_BATCH} objects, not {len(messages)}")
        name = self._name
        response = self._conn.wait_call(
            self._conn.queues.Put,
            lambda wait: pb.PutRequest(queue=name, messages=messages, timeout=wait),
            block, timeout, errors.Full)
        ids: List[int] = []
        for r in response.results:
            if r.error_reason:
                raise errors.from_reason(r.error_reason, r.error_message)
            ids.append(int(r.message_id))
        return ids

    # -- get -------------------------------------------------------------

    def _get(self, max_messages: int, block: bool, timeout: Optional[float]) -> List[Message]:
        self._check_open()
        name = self._name
        response = self._conn.wait_call(
            self._conn.queues.Get,
            lambda wait: pb.GetRequest(queue=name, timeout=wait, max_messages=max_messages),
            block, timeout, errors.Empty)
        if max_messages <= 1:
            got = [Message(name, response.message, response.delivery_tag, self,
                           self._serializer)]
        else:
            got = [Message(name, d.message, d.delivery_tag, self, self._serializer)
                   for d in response.deliveries]
        if self._joinable:
            outstanding = self._local()
            with self._lock:
                for m in got:
                    outstanding[m._tag] = m
        else:
            self._finish_all(got)
        return got

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Takes the oldest message and returns its value, waiting while the
        queue is empty (up to ``timeout`` seconds, then :class:`basin.Empty`).
        Once the queue is closed and drained: :class:`basin.Closed`."""
        return self._get(1, block, timeout)[0].value

    def get_nowait(self) -> Any:
        """``get(False)``."""
        return self.get(False)

    def get_message(self, block: bool = True, timeout: Optional[float] = None) -> Message:
        """As ``get``, returning the :class:`basin.Message` (value, id, headers,
        delivery count)."""
        return self._get(1, block, timeout)[0]

    def get_many(self, max_items: int, block: bool = True,
                 timeout: Optional[float] = None) -> List[Message]:
        """Up to ``max_items`` (1 to 10,000) messages, waiting until at least
        one is ready."""
        if not 1 <= max_items <= MAX_BATCH:
            raise ValueError(f"max_items must be 1 to {MAX_BATCH}")
        return self._get(max_items, block, timeout)

    def __iter__(self) -> Iterator[Any]:
        """Yields ``get()`` until the queue is closed and drained."""
        while True:
            try:
                yield self.get()
            except errors.Closed:
                return

    # -- finishing deliveries (Message.task_done / release / extend) ------

    def _task_done_call(self, tag: str) -> Any:
        return self._conn.queues.TaskDone.future(
            pb.TaskDoneRequest(queue=self._name, delivery_tag=tag))

    def _finish_all(self, messages: List[Message]) -> None:
        futures = [self._task_done_call(m._tag) for m in messages]
        for f in futures:
            try:
                f.result()
            except grpc.RpcError as e:
                raise errors.from_rpc_error(e) from None

    def _finish(self, message: Message) -> None:
        if message.queue != self._name or not isinstance(message._tag, str):
            raise ValueError(f"{message!r} was not delivered by queue {self._name!r}"
                             " (a Consumer's messages are acked through it)")
        _forget(message)
        self._conn.call(self._conn.queues.TaskDone,
                        pb.TaskDoneRequest(queue=self._name, delivery_tag=message._tag))

    def _release(self, message: Message, delay: Optional[Delay] = None) -> None:
        fields = release_fields(delay)
        _forget(message)
        self._conn.call(self._conn.queues.Release,
                        pb.ReleaseRequest(queue=self._name, delivery_tag=message._tag, **fields))

    def _reject(self, message: Message) -> None:
        _forget(message)
        self._conn.call(self._conn.queues.Release,
                        pb.ReleaseRequest(queue=self._name, delivery_tag=message._tag,
                                          reject=True))

    def _extend(self, message: Message, seconds: Optional[float]) -> None:
        request = pb.ExtendLeaseRequest(queue=self._name, delivery_tag=message._tag)
        if seconds is None:
            seconds = _seconds(self.info().options.visibility_timeout)
        request.duration.CopyFrom(duration(seconds))
        self._conn.call(self._conn.queues.ExtendLease, request)

    # -- state -----------------------------------------------------------

    def _info(self) -> Any:
        return self._conn.call(self._conn.queues.GetQueue,
                               pb.GetQueueRequest(name=self._name)).queue

    def info(self) -> pb.QueueInfo:
        """The queue's settings and counters (``basin.v1.queue_pb2.QueueInfo``)."""
        info: pb.QueueInfo = self._info()
        return info

    def qsize(self) -> int:
        """Messages waiting to be taken (not counting those taken and not finished)."""
        return int(self._info().stats.size)

    def empty(self) -> bool:
        """True when no message is waiting to be taken."""
        return bool(self._info().stats.empty)

    def full(self) -> bool:
        """True when ``maxsize`` messages are waiting (never for an unbounded queue)."""
        return bool(self._info().stats.full)

    # -- closing ---------------------------------------------------------

    def close_queue(self) -> bool:
        """Ends the stream for every producer and consumer: later puts raise
        :class:`basin.Closed`, and gets raise it once what is left is
        drained (ending ``for item in q:`` loops). No ``None`` sentinels
        needed. Returns True if it was closed already."""
        return bool(self._conn.call(self._conn.queues.CloseQueue,
                                    pb.CloseQueueRequest(queue=self._name)).already_closed)

    def delete_queue(self) -> int:
        """Deletes the queue on the broker; returns the messages dropped."""
        return int(self._conn.call(self._conn.queues.DeleteQueue,
                                   pb.DeleteQueueRequest(name=self._name)).dropped_messages)

    def close(self) -> None:
        """This object will not be used again in this process (the standard
        library's meaning: the queue itself stays open; see ``close_queue``)."""
        self._closed = True

    def join_thread(self) -> None:
        """Nothing to wait for: every ``put`` returns once the broker holds the message."""
        if not self._closed:
            raise AssertionError(f"Queue {self!r} not closed")

    def cancel_join_thread(self) -> None:
        """Nothing to cancel (see ``join_thread``)."""

    def __enter__(self) -> "Queue":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class JoinableQueue(Queue):
    """A :class:`Queue` whose consumers call ``task_done()`` for each item,
    and whose ``join()`` waits until every item put has been.

    A delivery not finished within the queue's ``visibility_timeout``
    (30 s unless set), or whose process dies, goes back to the queue for
    another consumer: nothing is lost, but work can be done twice.
    """

    _joinable = True

    def task_done(self, message: Optional[Message] = None) -> None:
        """Finishes a delivery: without an argument the oldest one this
        object handed out in this process and not finished (the standard
        library's meaning); ``task_done(msg)`` the given one. ValueError
        when there is none left to finish."""
        if message is None:
            outstanding = self._local()
            with self._lock:
                if not outstanding:
                    raise ValueError("task_done() called too many times")
                tag = next(iter(outstanding))
                message = outstanding.pop(tag)
        self._finish(message)

    def join(self, timeout: Optional[float] = None) -> None:
        """Blocks until every message put has been finished. With a
        ``timeout`` (not in the standard library): :class:`basin.JoinTimeout`.
        Works after ``close()``, as the standard library's does."""
        name = self._name
        self._conn.wait_call(self._conn.queues.Join,
                             lambda wait: pb.JoinRequest(queue=name, timeout=wait), True,
                             timeout, errors.JoinTimeout)

    def unfinished(self) -> int:
        """Messages put and not yet finished (waiting or being worked on)."""
        return int(self._info().stats.unfinished)


def _forget(message: Message) -> None:
    """Drops a delivery from the unfinished ones of the queue object that
    handed it out (task_done() without an argument no longer picks it)."""
    owner = message._source
    if isinstance(owner, Queue):
        outstanding = owner._local()
        with owner._lock:
            outstanding.pop(message._tag, None)


def _rebuild(cls: Any, name: str, address: str, serializer: SerializerSpec) -> Queue:
    q: Queue = cls.__new__(cls)
    q._name = name
    q._conn = default_connection(address)
    q._serializer_spec = serializer
    q._serializer = resolve(serializer)
    q._closed = False
    q._lock = threading.Lock()
    q._pid = os.getpid()
    q._outstanding = {}
    return q

