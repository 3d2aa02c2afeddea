"""Test certificates, made with the openssl command when a test session
starts (never committed): a CA, a server certificate for 127.0.0.1 and
localhost, client certificates signed by it, one expired, and one signed by
another CA."""

from __future__ import annotations

import os
import subprocess
from typing import Dict, Optional

OPENSSL = "openssl"


def _run(*args: str, cwd: str) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def _key(name: str, cwd: str) -> None:
    _run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-out", f"{name}.key", cwd=cwd)


def _ca(name: str, cwd: str) -> None:
    _key(name, cwd)
    _run("req", "-x509", "-new", "-key", f"{name}.key", "-out", f"{name}.pem", "-days", "3",
         "-subj", f"/CN={name}", cwd=cwd)


def _signed(name: str, cn: str, ca: str, cwd: str, san: Optional[str] = None,
            expired: bool = False) -> None:
    _key(name, cwd)
    _run("req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
         cwd=cwd)
    ext = os.path.join(cwd, f"{name}.ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
    if expired:
        # openssl x509 -req cannot backdate; `ca` can, with a minimal config.
        conf = os.path.join(cwd, f"{name}.cnf")
        os.makedirs(os.path.join(cwd, f"{name}.db"), exist_ok=True)
        open(os.path.join(cwd, f"{name}.index"), "w").close()
        with open(conf, "w") as f:
            f.write(f"""[ca]
default_ca = c
[c]
database = {name}.index
new_certs_dir = {name}.db
serial = {name}.serial
default_md = sha256
policy = p
unique_subject = no
[p]
commonName = supplied
""")
        with open(os.path.join(cwd, f"{name}.serial"), "w") as f:
            f.write("01\n")
        _run("ca", "-batch", "-config", conf, "-cert", f"{ca}.pem", "-keyfile", f"{ca}.key",
             "-in", f"{name}.csr", "-out", f"{name}.pem", "-startdate", "20200101000000Z",
             "-enddate", "20200102000000Z", "-notext", cwd=cwd)
    else:
        _run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", ext, cwd=cwd)


def make(directory: str) -> Dict[str, str]:
    """Writes every certificate into ``directory``; returns name -> path
    (``X`` is the certificate, ``X.key`` its key)."""
    _ca("ca", directory)
    _ca("other-ca", directory)
    _signed("server", "basin-test-server", "ca", directory, san="IP:127.0.0.1,DNS:localhost")
    _signed("server2", "basin-rotated-server", "ca", directory,
            san="IP:127.0.0.1,DNS:localhost")
    _signed("alice", "alice", "ca", directory)
    _signed("expired", "alice", "ca", directory, expired=True)
    _signed("stranger", "alice", "other-ca", directory)
    paths: Dict[str, str] = {}
    for name in ("ca", "other-ca", "server", "server2", "alice", "expired", "stranger"):
        paths[name] = os.path.join(directory, f"{name}.pem")
        paths[name + ".key"] = os.path.join(directory, f"{name}.key")
    return paths
