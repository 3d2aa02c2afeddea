"""Builds the `basin` package, generating the gRPC stubs from proto/ first.

The stubs (basin/v1/*_pb2*.py) are never committed: `build_py` runs protoc
with grpc_python_plugin (Debian's protobuf-compiler-grpc) into the build
directory, so `pip install ./client/python` works from a checkout.
"""

import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_stubs import generate  # noqa: E402


class BuildWithStubs(build_py):
    def run(self) -> None:
        super().run()
        generate(self.build_lib)


setup(cmdclass={"build_py": BuildWithStubs})
