"""One gRPC channel to a broker per process, and the call helpers on it.

Fork safety: a channel is never used across ``fork()``. The connection
remembers which process opened its channel and opens a fresh one in a child
on first use; gRPC's own fork support (``GRPC_ENABLE_FORK_SUPPORT``, set by
``basin/__init__.py`` before grpc is imported) keeps gRPC's core usable in
the child.
"""

from __future__ import annotations

import math
import os
import threading
import time
from typing import Any, Callable, Optional, Tuple, Type, TypeVar

import grpc
from google.protobuf import duration_pb2

from . import errors
from ._security import Security, open_channel, security_from
from .v1 import queue_pb2_grpc, server_pb2_grpc, topic_pb2_grpc

DEFAULT_ADDRESS = "127.0.0.1:7878"

# Longest wait asked of the broker in one call; a longer wait is re-issued
# (the broker caps one call at --max-wait, 60 s by default, anyway).
MAX_CALL_WAIT = 30.0
# Slack for the broker to answer after the wait it was asked for, so a timed
# call ends with the broker's typed answer rather than a transport deadline.
ANSWER_SLACK = 10.0

# Pauses before a Producer or Consumer opens a new stream after a failure:
# from the first, doubling to the last (as the C++ SDK's).
RETRY_PAUSE_FIRST = 0.02
RETRY_PAUSE_MAX = 1.0

_CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # A restarted broker is back within a second or two: retry soon and often
    # rather than on gRPC's default backoff (1 s growing to 2 min).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    # Each connection owns its socket: a channel made after the broker
    # restarted must not inherit one the old broker left dead.
    ("grpc.use_local_subchannel_pool", 1),
    # No gRPC-level retries: the SDK reconnects its streams itself. A stream
    # opened as the broker shut down was seen to end with UNAVAILABLE yet never
    # complete its pending read, so the reader waited forever; gRPC 1.51's
    # retry layer, which replays such streams, is the suspect (docs/api.md,
    # "Reconnects (SDK)").
    ("grpc.enable_retries", 0),
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
]

T = TypeVar("T")


def duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def clamp_timeout(timeout: Optional[float]) -> Optional[float]:
    """multiprocessing's rule: a negative timeout is no wait at all; an
    infinite one is no timeout."""
    if timeout is None:
        return None
    seconds = float(timeout)
    if math.isnan(seconds):
        raise ValueError("timeout must be a number of seconds, not NaN")
    return None if math.isinf(seconds) and seconds > 0 else max(0.0, seconds)


class Connection:
    """A lazily opened channel to one broker, reopened in a forked child."""

    def __init__(self, address: str = DEFAULT_ADDRESS,
                 security: Optional[Security] = None) -> None:
        self.address = address
        # Settled here, so that a bad token or TLS setting fails at once.
        self.security: Security = security if security is not None else security_from()
        self._lock = threading.Lock()
        self._pid = -1
        self._channel: Any = None
        self._queue_stub: Any = None
        self._topic_stub: Any = None
        self._server_stub: Any = None

    def _open(self) -> None:
        pid = os.getpid()
        with self._lock:
            if self._pid == pid:
                return
            # The parent's channel is dropped, not closed: closing it here
            # would act on state the parent still uses.
            channel = open_channel(self.address, self.security, _CHANNEL_OPTIONS)
            self._queue_stub = queue_pb2_grpc.QueueServiceStub(channel)
            self._topic_stub = topic_pb2_grpc.TopicServiceStub(channel)
            self._server_stub = server_pb2_grpc.ServerServiceStub(channel)
            self._channel = channel
            self._pid = pid

    @property
    def channel(self) -> Any:
        if self._pid != os.getpid():
            self._open()
        return self._channel

    @property
    def queues(self) -> Any:
        """The QueueService stub of this process's channel."""
        if self._pid != os.getpid():
            self._open()
        return self._queue_stub

    @property
    def topics(self) -> Any:
        """The TopicService stub of this process's channel."""
        if self._pid != os.getpid():
            self._open()
        return self._topic_stub

    @property
    def server(self) -> Any:
        """The ServerService stub of this process's channel."""
        if self._pid != os.getpid():
            self._open()
        return self._server_stub

    def wait_ready(self, timeout: float) -> bool:
        """True once the channel is connected, False after ``timeout``."""
        ready = grpc.channel_ready_future(self.channel)
        try:
            ready.result(timeout=timeout)
            return True
        except grpc.FutureTimeoutError:
            # Left subscribed, it would keep the channel connecting (and a
            # gRPC thread polling it) forever; a fork would then kill the child.
            ready.cancel()
            return False

    def close(self) -> None:
        with self._lock:
            if self._pid == os.getpid() and self._channel is not None:
                self._channel.close()
            self._channel = None
            self._pid = -1

    def call(self, method: Callable[..., T], request: Any,
             timeout: Optional[float] = ANSWER_SLACK) -> T:
        """A unary call; a failure raises the typed basin exception."""
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as e:
            raise errors.from_rpc_error(e) from None

    def wait_call(self, method: Callable[..., T], make_request: Callable[[Any], Any],
                  block: bool, timeout: Optional[float],
                  timed_out: Type[errors.Error]) -> T:
        """A call that waits on the broker (put, get, join).

        ``make_request(wait)`` builds the request for a wait (a Duration).
        A call the broker ended at its per-call cap (``timed_out`` with time
        left) is re-issued, so an untimed call waits as long as it takes.
        """
        timeout = clamp_timeout(timeout) if block else 0.0
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = MAX_CALL_WAIT
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - time.monotonic()))
            try:
                return method(make_request(duration(wait)), timeout=wait + ANSWER_SLACK)
            except grpc.RpcError as e:
                error = errors.from_rpc_error(e)
            if isinstance(error, timed_out) and (deadline is None
                                                 or deadline - time.monotonic() > 0):
                continue
            raise error


_defaults: dict[Tuple[str, Security], Connection] = {}
_defaults_lock = threading.Lock()


def default_connection(address: str) -> Connection:
    """The process-wide shared connection to ``address``, secured as the
    BASIN_* environment says (basin._security)."""
    security = security_from()
    with _defaults_lock:
        conn = _defaults.get((address, security))
        if conn is None:
            conn = _defaults[(address, security)] = Connection(address, security)
        return conn
