"""How queue objects turn Python values into message bytes and back.

``"pickle"`` (the default, as multiprocessing does) takes any picklable
object. **Unpickling runs code chosen by whoever wrote the message**: use it
only with a broker and producers you trust, and ``"json"`` or ``"bytes"``
otherwise. ``"json"`` takes what :func:`json.dumps` takes (UTF-8 on the
wire); ``"bytes"`` passes bytes-like payloads through unchanged (and ``str``
as UTF-8). A pair ``(dumps, loads)`` of callables is used as given.
"""

from __future__ import annotations

import json
import pickle
from typing import Any, Callable, NamedTuple, Tuple, Union

__all__ = ["Serializer", "SerializerSpec", "resolve"]


class Serializer(NamedTuple):
    name: str
    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]


SerializerSpec = Union[str, Tuple[Callable[[Any], bytes], Callable[[bytes], Any]], Serializer]


def _pickle_dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _json_dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _bytes_dumps(obj: Any) -> bytes:
    if isinstance(obj, bytes):
        return obj
    if isinstance(obj, (bytearray, memoryview)):
        return bytes(obj)
    if isinstance(obj, str):
        return obj.encode()
    raise TypeError(f"serializer 'bytes' takes bytes, bytearray, memoryview or str, "
                    f"not {type(obj).__name__}")


def _identity(data: bytes) -> bytes:
    return data


_NAMED = {
    "pickle": Serializer("pickle", _pickle_dumps, pickle.loads),
    "json": Serializer("json", _json_dumps, json.loads),
    "bytes": Serializer("bytes", _bytes_dumps, _identity),
}


def resolve(spec: SerializerSpec) -> Serializer:
    """The Serializer for ``"pickle"``, ``"json"``, ``"bytes"`` or a pair."""
    if isinstance(spec, Serializer):
        return spec
    if isinstance(spec, str):
        try:
            return _NAMED[spec]
        except KeyError:
            raise ValueError(f"unknown serializer {spec!r}: use 'pickle', 'json', 'bytes' "
                             f"or a (dumps, loads) pair") from None
    if (isinstance(spec, tuple) and len(spec) == 2 and callable(spec[0])
            and callable(spec[1])):
        return Serializer("custom", spec[0], spec[1])
    raise TypeError("serializer must be 'pickle', 'json', 'bytes' or a (dumps, loads) pair")
