"""Fixtures for the operations tests (metrics, dashboard, configuration,
deployment files): the real basind with its HTTP listener on.

Run through ctest (tests/CMakeLists.txt: ops_*), or by hand:

    PYTHONPATH=build/client/python BASIN_BASIND=build/broker/basind \\
        /usr/bin/python3 -m pytest tests/ops
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from typing import Dict, Iterator, Optional, Tuple

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
from basind import BASIND, ROOT, Broker, wait_until  # noqa: E402,F401  (tests import them from here)


@pytest.fixture(scope="module")
def http_broker() -> Iterator[Broker]:
    """A broker with --http-listen, shared by one module."""
    b = Broker("--http-listen", "127.0.0.1:0", "--max-memory", "256MiB")
    yield b
    b.close()


def fetch(broker: Broker, path: str, method: str = "GET",
          headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, str], str]:
    """One HTTP request to the broker's listener: status, headers, body."""
    request = urllib.request.Request(f"http://{broker.http_address}{path}", method=method,
                                     headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


