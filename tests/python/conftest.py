"""Fixtures for the Python SDK's tests: the real basind on an ephemeral port.

Run through ctest (tests/CMakeLists.txt), which sets BASIN_BASIND to the
built broker and PYTHONPATH to the build tree's copy of the package; by hand:

    PYTHONPATH=build/client/python BASIN_BASIND=build/broker/basind \\
        /usr/bin/python3 -m pytest tests/python
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Iterator, List

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
from basind import BASIND, ROOT, Broker, wait_until  # noqa: E402,F401  (tests import them from here)


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    """A broker shared by one test module (tests use distinct queue names)."""
    b = Broker()
    yield b
    b.close()


@pytest.fixture
def fresh_broker() -> Iterator[Broker]:
    """A broker of the test's own."""
    b = Broker()
    yield b
    b.close()


@pytest.fixture
def durable_broker() -> Iterator[Broker]:
    """A broker with a data directory, for restarts."""
    b = Broker(durable=True)
    yield b
    b.close()


def unique(prefix: str) -> str:
    """A queue name no other test uses."""
    unique.n += 1  # type: ignore[attr-defined]
    return f"{prefix}-{os.getpid()}-{unique.n}"  # type: ignore[attr-defined]


unique.n = 0  # type: ignore[attr-defined]



def no_basin_threads() -> bool:
    """True once no Producer, Consumer or PubSub thread of an earlier test is
    alive: gRPC skips its fork handlers while threads call into it, and a
    child forked then cannot use gRPC. Tests that fork wait for this."""
    import threading
    return wait_until(lambda: not any(t.name.startswith("basin-")
                                      for t in threading.enumerate()))


def run_python(args: List[str], **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def, type-arg]
    """Runs a Python program with the same interpreter and PYTHONPATH."""
    import sys
    return subprocess.run([sys.executable, *args], **kwargs)
