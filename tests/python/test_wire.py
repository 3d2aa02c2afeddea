"""The Producer's hand-encoded requests are byte for byte protobuf's."""

from __future__ import annotations

from basin import _wire
from basin.v1 import queue_pb2 as pb


def test_produce_request_bytes_match_protobuf() -> None:
    payloads = [b"", b"x", b"y" * 125, b"z" * 126, b"w" * 127, b"v" * 300, b"u" * 70_000]
    headers = [None, None, {"k": "v"}, None, None, {"a": "1", "b": "2"}, None]
    frames = [_wire.put_message(p, h) for p, h in zip(payloads, headers)]
    for batch_id, first in [(1, 1), (127, 128), (300, 2**40), (2**63, 2**64 - 1)]:
        got = _wire.produce_request(b"orders", batch_id, b"producer-1", first, frames)
        want = pb.ProduceRequest(queue="orders", batch_id=batch_id, producer_id="producer-1",
                                 first_sequence=first, compact_results=True)
        for p, h in zip(payloads, headers):
            want.messages.add(payload=p, headers=h or {})
        assert pb.ProduceRequest.FromString(got) == want
        if not any(headers):  # map order is protobuf's to choose
            assert got == want.SerializeToString()
    plain = [_wire.put_message(p) for p in payloads]
    want = pb.ProduceRequest(queue="q", batch_id=5, producer_id="p", first_sequence=9,
                             messages=[pb.PutMessage(payload=p) for p in payloads],
                             compact_results=True)
    assert _wire.produce_request(b"q", 5, b"p", 9, plain) == want.SerializeToString()


def test_varint() -> None:
    assert _wire.varint(0) == b"\x00"
    for n in [1, 127, 128, 300, 16383, 16384, 2**32, 2**64 - 1]:
        m = pb.ProduceRequest(batch_id=n)
        assert m.SerializeToString() == b"\x10" + _wire.varint(n)
