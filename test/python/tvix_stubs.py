"""Generates the Python gRPC stubs from the repository's protos/ at test time.

Uses Debian's python3-grpc-tools (grpc_tools.protoc 1.14, i.e. protoc 3.6):
its output is the old descriptor-building style (no _builder), which Debian's
python3-protobuf 3.21/4.21.12 runtime still loads, with the default C++
backend as well as with PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python.

The health and reflection protos live in packages grpc.health.v1 and
grpc.reflection.v1(alpha), so protoc writes them to <out>/grpc/health/...
and their *_pb2_grpc.py modules import them as `grpc.health.v1.health_pb2`.
`grpc` is grpcio's own regular package, though, and Debian ships neither
grpcio-health-checking nor grpcio-reflection, so those subpackages do not
exist. We append <out>/grpc to grpc.__path__, which makes
grpc.health / grpc.reflection resolvable as namespace subpackages of grpcio
without touching anything installed.
"""

import atexit
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import types

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.environ.get("TVIX_PROTOS") or os.path.normpath(os.path.join(HERE, "..", "..", "protos"))

TVIX_PROTOS = [
    "tvix/castore/protos/castore.proto",
    "tvix/castore/protos/rpc_blobstore.proto",
    "tvix/castore/protos/rpc_directory.proto",
    "tvix/store/protos/pathinfo.proto",
    "tvix/store/protos/rpc_pathinfo.proto",
]
GRPC_PROTOS = [
    "grpc/health/v1/health.proto",
    "grpc/reflection/v1/reflection.proto",
    "grpc/reflection/v1alpha/reflection.proto",
]

_loaded = None


def generate(out_dir):
    """Runs grpc_tools.protoc on all protos into out_dir; raises with protoc's output on failure."""
    cmd = [sys.executable, "-m", "grpc_tools.protoc", "-I", PROTO_ROOT,
           "--python_out=" + out_dir, "--grpc_python_out=" + out_dir] + TVIX_PROTOS + GRPC_PROTOS
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if res.returncode != 0:
        raise RuntimeError("protoc failed (%d): %s\n%s" % (res.returncode, " ".join(cmd), res.stdout))


def load():
    """Generates (once per process) and imports all stub modules; returns a namespace of them."""
    global _loaded
    if _loaded is not None:
        return _loaded
    import grpc  # noqa: F401 - must be grpcio's package, extended below

    out_dir = tempfile.mkdtemp(prefix="tvix-pystubs-")
    atexit.register(shutil.rmtree, out_dir, True)
    generate(out_dir)
    sys.path.insert(0, out_dir)
    grpc.__path__.append(os.path.join(out_dir, "grpc"))

    def imp(name):
        return importlib.import_module(name)

    ns = types.SimpleNamespace(
        out_dir=out_dir,
        castore=imp("tvix.castore.protos.castore_pb2"),
        blob=imp("tvix.castore.protos.rpc_blobstore_pb2"),
        blob_grpc=imp("tvix.castore.protos.rpc_blobstore_pb2_grpc"),
        directory=imp("tvix.castore.protos.rpc_directory_pb2"),
        directory_grpc=imp("tvix.castore.protos.rpc_directory_pb2_grpc"),
        pathinfo=imp("tvix.store.protos.pathinfo_pb2"),
        rpc_pathinfo=imp("tvix.store.protos.rpc_pathinfo_pb2"),
        rpc_pathinfo_grpc=imp("tvix.store.protos.rpc_pathinfo_pb2_grpc"),
        health=imp("grpc.health.v1.health_pb2"),
        health_grpc=imp("grpc.health.v1.health_pb2_grpc"),
        reflection=imp("grpc.reflection.v1.reflection_pb2"),
        reflection_grpc=imp("grpc.reflection.v1.reflection_pb2_grpc"),
        reflection_alpha=imp("grpc.reflection.v1alpha.reflection_pb2"),
        reflection_alpha_grpc=imp("grpc.reflection.v1alpha.reflection_pb2_grpc"),
    )
    _loaded = ns
    return ns
