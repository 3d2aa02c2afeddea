"""Typed exceptions of the Basin SDK.

The type comes from the machine-readable reason the broker sends in the
``basin-error-reason`` trailer, never from message text (the table is in
docs/api.md, "Errors"). ``Full`` and ``Empty`` subclass the :mod:`queue`
module's own exceptions, so ``except queue.Empty:`` code keeps working.
"""

from __future__ import annotations

import queue
from typing import Dict, Optional, Type

import grpc

__all__ = [
    "Error", "Full", "BrokerMemory", "Empty", "Closed", "JoinTimeout", "NotFound",
    "AlreadyExists", "DeliveryError", "LeaseExpired", "UnknownDelivery", "AlreadyDone",
    "InvalidArgument", "MessageTooLarge", "TooManyWaiters", "SlowSubscriber", "Unavailable",
]

REASON_KEY = "basin-error-reason"


class Error(Exception):
    """A call the broker refused, or that could not reach it.

    ``code`` is the gRPC status code, ``reason`` the broker's reason (empty
    for errors that did not come from the broker, such as a dropped
    connection), ``details`` the broker's human-readable message.
    """

    def __init__(self, details: str, code: Optional[grpc.StatusCode] = None,
                 reason: str = "") -> None:
        super().__init__(details)
        self.details = details
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.details} ({self.reason})" if self.reason else self.details


class Full(Error, queue.Full):
    """``put`` found no room before its timeout (QUEUE_FULL)."""


class BrokerMemory(Full):
    """``put`` waited on the broker's ``--max-memory`` rather than the queue bound."""


class Empty(Error, queue.Empty):
    """``get`` found nothing before its timeout (QUEUE_EMPTY)."""


class Closed(Error):
    """The queue is closed: puts are refused, gets fail once it is drained."""


class JoinTimeout(Error):
    """``join`` timed out with messages unfinished (QUEUE_UNFINISHED)."""


class NotFound(Error):
    """No such queue (or binding), or it was deleted while the call waited."""


class AlreadyExists(Error):
    """The queue exists with other settings than the ones given (QUEUE_EXISTS)."""


class DeliveryError(Error):
    """A delivery that no longer holds a lease: base of the three below."""


class LeaseExpired(DeliveryError):
    """The lease ended (expired or released) before task_done."""


class UnknownDelivery(DeliveryError):
    """The delivery tag names no delivery of this queue."""


class AlreadyDone(DeliveryError):
    """task_done twice for one delivery."""


class InvalidArgument(Error, ValueError):
    """A malformed request: name, duration, tag, reserved header, topic."""


class MessageTooLarge(InvalidArgument):
    """Payload and headers above the broker's --max-message-bytes or max_bytes."""


class TooManyWaiters(Error):
    """The queue's cap on blocked calls is reached."""


class SlowSubscriber(Error):
    """A subscription with the disconnect policy fell a whole buffer behind."""


class Unavailable(Error):
    """The broker is shutting down, cannot be reached, or cannot write its log."""


class Unauthenticated(Error):
    """The broker has users and this call's token (or certificate) names none."""


class PermissionDenied(Error):
    """The user's permissions do not cover this queue or topic (or the call
    needs the admin tag). Said the same whether or not the object exists."""


class RateLimited(Error):
    """The user wrote more messages per second than its rate; retry later."""


_BY_REASON: Dict[str, Type[Error]] = {
    "QUEUE_FULL": Full,
    "BROKER_MEMORY": BrokerMemory,
    "QUEUE_EMPTY": Empty,
    "QUEUE_CLOSED": Closed,
    "QUEUE_UNFINISHED": JoinTimeout,
    "QUEUE_NOT_FOUND": NotFound,
    "QUEUE_DELETED": NotFound,
    "BINDING_NOT_FOUND": NotFound,
    "QUEUE_EXISTS": AlreadyExists,
    "LEASE_EXPIRED": LeaseExpired,
    "UNKNOWN_DELIVERY": UnknownDelivery,
    "ALREADY_DONE": AlreadyDone,
    "INVALID_ARGUMENT": InvalidArgument,
    "INVALID_NAME": InvalidArgument,
    "INVALID_DURATION": InvalidArgument,
    "INVALID_DELIVERY_TAG": InvalidArgument,
    "RESERVED_HEADER": InvalidArgument,
    "INVALID_TOPIC": InvalidArgument,
    "MESSAGE_TOO_LARGE": MessageTooLarge,
    "TOO_MANY_WAITERS": TooManyWaiters,
    "SLOW_SUBSCRIBER": SlowSubscriber,
    "SHUTTING_DOWN": Unavailable,
    "STORAGE_UNAVAILABLE": Unavailable,
    "UNAUTHENTICATED": Unauthenticated,
    "PERMISSION_DENIED": PermissionDenied,
    "RATE_LIMITED": RateLimited,
}


def reason_of(error: grpc.RpcError) -> str:
    """The ``basin-error-reason`` trailer of a failed call, or ``""``."""
    try:
        trailers = error.trailing_metadata() or ()
    except Exception:  # a call that never started has no trailers
        return ""
    for key, value in trailers:
        if key == REASON_KEY:
            return value if isinstance(value, str) else bytes(value).decode()
    return ""


def from_rpc_error(error: grpc.RpcError) -> Error:
    """The typed exception for a failed gRPC call."""
    code: Optional[grpc.StatusCode] = error.code() if hasattr(error, "code") else None
    details = (error.details() if hasattr(error, "details") else None) or str(code)
    reason = reason_of(error)
    cls = _BY_REASON.get(reason)
    if cls is None:
        if code == grpc.StatusCode.UNAVAILABLE:
            cls = Unavailable
        elif code == grpc.StatusCode.INVALID_ARGUMENT:
            cls = InvalidArgument
        else:
            cls = Error
    return cls(details, code, reason)


def broken(error: grpc.RpcError) -> bool:
    """True for a call the transport broke (the broker restarted, the network
    dropped, a stream was reset), which a Producer or Consumer may redo on a
    new stream; false for an answer the broker gave on purpose. A CANCELLED
    the caller did not ask for is a break: a broker stopping resets its
    streams that way."""
    code = error.code() if hasattr(error, "code") else None
    if code == grpc.StatusCode.UNAVAILABLE:
        return True
    if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED):
        return reason_of(error) == ""
    return False


def from_reason(reason: str, details: str,
                code: Optional[grpc.StatusCode] = None) -> Error:
    """The typed exception for a reason reported inside a response (a batch
    message's ``error_reason``)."""
    return _BY_REASON.get(reason, Error)(details, code, reason)
