"""Fixtures for the security tests (TLS, users and permissions, limits):
the real basind with certificates made by the openssl command at the start
of the session, and users hashed by ``basind --hash-token``.

Run through ctest (tests/CMakeLists.txt: security_*), or by hand:

    PYTHONPATH=build/client/python BASIN_BASIND=build/broker/basind \\
        /usr/bin/python3 -m pytest tests/security
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, Iterator, Optional, Sequence, Tuple

import grpc
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
sys.path.insert(0, os.path.dirname(__file__))
from basind import BASIND, ROOT, Broker, wait_until  # noqa: E402,F401  (tests import them from here)
import certs  # noqa: E402

# name -> (token, the [[users]] table's permission lines)
USERS: Dict[str, Tuple[str, str]] = {
    "root": ("root-token-0123456789abcdef", 'configure = ".*"\nwrite = ".*"\nread = ".*"\n'
             'tags = ["admin"]'),
    "configurer": ("configurer-token-0123456789", 'configure = ".*"'),
    "writer": ("writer-token-0123456789abcd", 'write = ".*"'),
    "reader": ("reader-token-0123456789abcd", 'read = ".*"'),
    "admin": ("admin-token-0123456789abcdef", 'tags = ["admin"]'),
    # May publish anywhere and configure its own queues, but read nothing.
    "publisher": ("publisher-token-0123456789", 'configure = "pub-.*"\nwrite = ".*"'),
    # Valid, but with permissions on names no test uses.
    "nobody": ("nobody-token-0123456789abcd", 'configure = "elsewhere"\nwrite = "elsewhere"\n'
               'read = "elsewhere"'),
}


@pytest.fixture(scope="session")
def tls() -> Iterator[Dict[str, str]]:
    """The certificates (see certs.py), in a directory of the session's own."""
    if shutil.which(certs.OPENSSL) is None:
        pytest.fail("the openssl command is missing (scripts/setup.sh installs it)")
    directory = tempfile.mkdtemp(prefix="basin-certs-")
    yield certs.make(directory)
    shutil.rmtree(directory, ignore_errors=True)


def hash_token(token: str) -> str:
    out = subprocess.run([BASIND, "--hash-token"], input=token + "\n", capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


def users_toml(users: Dict[str, Tuple[str, str]], extra: Optional[Dict[str, str]] = None) -> str:
    """A users file: each user with its token's hash and its permission lines
    (plus ``extra[name]`` lines)."""
    parts = []
    for name, (token, lines) in users.items():
        more = (extra or {}).get(name, "")
        parts.append(f'[[users]]\nname = "{name}"\ntokens = ["{hash_token(token)}"]\n'
                     f"{lines}\n{more}\n")
    return "\n".join(parts)


@pytest.fixture(scope="session")
def users_file() -> Iterator[str]:
    """USERS as a users file."""
    directory = tempfile.mkdtemp(prefix="basin-users-")
    path = os.path.join(directory, "users.toml")
    with open(path, "w") as f:
        f.write(users_toml(USERS))
    yield path
    shutil.rmtree(directory, ignore_errors=True)


def token_of(name: str) -> str:
    return USERS[name][0]


def metadata(token: Optional[str]) -> Sequence[Tuple[str, str]]:
    return [] if token is None else [("authorization", "Bearer " + token)]


def channel(address: str, tls: Optional[Dict[str, str]] = None,
            client: Optional[str] = None) -> grpc.Channel:
    """A raw channel: plaintext, or TLS trusting the test CA (with a client
    certificate ``client`` from certs.py)."""
    # A connection of its own: gRPC would otherwise share one between every
    # channel to the same address.
    options = [("grpc.use_local_subchannel_pool", 1)]
    if tls is None:
        return grpc.insecure_channel(address, options=options)
    def read(p: str) -> bytes:
        with open(p, "rb") as f:
            return f.read()
    creds = grpc.ssl_channel_credentials(
        read(tls["ca"]), read(tls[client + ".key"]) if client else None,
        read(tls[client]) if client else None)
    return grpc.secure_channel(address, creds, options=options)
