"""Hand-encoded ProduceRequest bytes, for the Producer's hot path.

Building a protobuf message per sent object costs ~0.6 µs in Python;
framing the payload by hand costs ~0.1 µs, and the bytes are exactly what
``ProduceRequest.SerializeToString`` gives for the same fields, in field
order (tests/python/test_wire.py checks it). Anything beyond a bare payload
(headers) is encoded by protobuf and framed here.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from .v1 import queue_pb2 as pb

_BYTE = [bytes([i]) for i in range(128)]

# Field tags (field number << 3 | wire type) of ProduceRequest and PutMessage.
_QUEUE, _BATCH_ID, _MESSAGES, _PRODUCER_ID, _FIRST_SEQUENCE = b"\x0a", b"\x10", b"\x1a", b"\x22", b"\x28"
_PAYLOAD = b"\x0a"
_COMPACT_RESULTS_ON = b"\x30\x01"  # field 6 (varint) = true
# Everything before a payload of n < 126 bytes (one-byte lengths): one
# concatenation per message instead of four.
_SHORT_PREFIX = [_MESSAGES + _BYTE[n + 2] + _PAYLOAD + _BYTE[n] for n in range(126)]


def varint(n: int) -> bytes:
    if n < 128:
        return _BYTE[n]
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def put_message(payload: bytes, headers: Optional[Dict[str, str]] = None,
                when: Optional[Dict[str, Any]] = None) -> bytes:
    """One entry of ProduceRequest.messages, tag and length included;
    ``when``: its schedule fields (basin._schedule)."""
    if headers or when:
        inner: bytes = pb.PutMessage(payload=payload, headers=headers,
                                     **(when or {})).SerializeToString()
        return _MESSAGES + varint(len(inner)) + inner
    n = len(payload)
    if n == 0:
        return _MESSAGES + b"\x00"  # proto3 leaves an empty field out
    if n < 126:
        return _SHORT_PREFIX[n] + payload
    inner_len = 1 + len(varint(n)) + n
    return _MESSAGES + varint(inner_len) + _PAYLOAD + varint(n) + payload


def produce_request(queue: bytes, batch_id: int, producer_id: bytes, first_sequence: int,
                    messages: List[bytes]) -> bytes:
    """A whole ProduceRequest from framed messages (put_message), asking
    for the short confirm (compact_results)."""
    return b"".join((
        _QUEUE, varint(len(queue)), queue,
        _BATCH_ID, varint(batch_id),
        *messages,
        _PRODUCER_ID, varint(len(producer_id)), producer_id,
        _FIRST_SEQUENCE, varint(first_sequence),
        _COMPACT_RESULTS_ON,
    ))
