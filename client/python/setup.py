"""Builds the gradserve package; its gRPC stubs (gradserve.v1) are generated
here from the repository's proto/ at build time, never committed.

The protos use proto3 `optional`, which needs protoc >= 3.15. grpc_tools'
bundled protoc is tried first; Debian 12's python3-grpc-tools bundles protoc
3.5, too old, so then the system's protoc (protobuf-compiler, 3.21: the same
release as Debian's python3-protobuf runtime) with gRPC's Python plugin
(protobuf-compiler-grpc) generates them. GRADSERVE_PROTO_DIR names another
proto/ directory (one holding gradserve/v1/*.proto)."""

import glob
import os
import shutil
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def proto_dir():
    for candidate in (os.environ.get("GRADSERVE_PROTO_DIR"),
                      os.path.join(HERE, "proto"),
                      os.path.join(HERE, "..", "..", "proto")):
        if candidate and glob.glob(os.path.join(candidate, "gradserve", "v1", "*.proto")):
            return os.path.abspath(candidate)
    sys.exit("gradserve: cannot find the protos (gradserve/v1/*.proto): set "
             "GRADSERVE_PROTO_DIR to the repository's proto/ directory")


def grpc_tools_command(include, out):
    """grpc_tools.protoc, with its bundled well-known types; None without it."""
    try:
        import grpc_tools
    except ImportError:
        return None
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    return [sys.executable, "-m", "grpc_tools.protoc", f"-I{include}", f"-I{well_known}",
            f"--python_out={out}", f"--grpc_python_out={out}"]


def system_protoc_command(include, out):
    """The system's protoc with gRPC's Python plugin; None without them."""
    protoc = shutil.which("protoc")
    plugin = shutil.which("grpc_python_plugin")
    if not protoc or not plugin:
        return None
    return [protoc, f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}",
            f"--plugin=protoc-gen-grpc_python={plugin}"]


def generate_stubs(out):
    include = proto_dir()
    protos = sorted(glob.glob(os.path.join(include, "gradserve", "v1", "*.proto")))
    failures = []
    for make in (grpc_tools_command, system_protoc_command):
        command = make(include, out)
        if command is None:
            failures.append(f"{make.__name__}: not installed")
            continue
        done = subprocess.run(command + protos, capture_output=True, text=True)
        if done.returncode == 0:
            break
        failures.append(f"{' '.join(command[:3])}: {done.stderr.strip()[:400]}")
    else:
        sys.exit("gradserve: could not generate the gRPC stubs:\n  " + "\n  ".join(failures)
                 + "\n(install protobuf-compiler and protobuf-compiler-grpc, or grpcio-tools)")
    package = os.path.join(out, "gradserve", "v1")
    with open(os.path.join(package, "__init__.py"), "w") as f:
        f.write('"""gRPC stubs of the gradserve.v1 protos, generated at build time."""\n')


class BuildWithStubs(build_py):
    def run(self):
        super().run()
        if not self.dry_run:
            generate_stubs(os.path.abspath(self.build_lib))


setup(cmdclass={"build_py": BuildWithStubs})
