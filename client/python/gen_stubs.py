"""Generates basin/v1/*_pb2.py, *_pb2.pyi and *_pb2_grpc.py from proto/.

    /usr/bin/python3 gen_stubs.py OUT_DIR     # writes OUT_DIR/basin/v1/...

Used by setup.py (pip install) and by CMake (the build tree's copy of the
package). Needs protoc and grpc_python_plugin (Debian: protobuf-compiler,
protobuf-compiler-grpc). BASIN_PROTO_DIR overrides where proto/ is.
"""

import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PROTOS = ["basin/v1/queue.proto", "basin/v1/server.proto", "basin/v1/topic.proto"]


def proto_dir() -> str:
    return os.environ.get("BASIN_PROTO_DIR") or os.path.join(HERE, "..", "..", "proto")


def generate(out_dir: str) -> None:
    protoc = shutil.which("protoc")
    plugin = shutil.which("grpc_python_plugin")
    if not protoc or not plugin:
        raise SystemExit("basin: protoc and grpc_python_plugin are needed to build the stubs "
                         "(Debian: apt-get install protobuf-compiler protobuf-compiler-grpc)")
    src = proto_dir()
    if not os.path.isfile(os.path.join(src, PROTOS[0])):
        raise SystemExit(f"basin: no {PROTOS[0]} under {src}; set BASIN_PROTO_DIR")
    os.makedirs(os.path.join(out_dir, "basin", "v1"), exist_ok=True)
    subprocess.run([protoc, f"-I{src}", f"--python_out={out_dir}", f"--pyi_out={out_dir}",
                    f"--grpc_out={out_dir}", f"--plugin=protoc-gen-grpc={plugin}", *PROTOS],
                   check=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    generate(sys.argv[1])
