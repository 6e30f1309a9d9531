"""ONNX's own backend test data (Debian's libonnx-testdata) run through
gradserve's ONNX import: each case is a model.onnx with
test_data_set_*/input_*.pb and output_*.pb, compared as ONNX's backend
runner does (rtol 1e-3, atol 1e-7).

As a script: `onnx_conformance.py [node|pytorch-converted ...]` prints one
line per case and the counts, against a server it starts."""

import collections
import glob
import os
import sys

import grpc
import numpy as np
import onnx
from onnx import numpy_helper

import gs
from gs import pb

DATA = "/usr/share/libonnx-testdata/data"
RTOL, ATOL = 1e-3, 1e-7
FEEDABLE = {np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64)}

Outcome = collections.namedtuple("Outcome", "case ops verdict detail")


def cases(suite):
    return sorted(glob.glob(os.path.join(DATA, suite, "test_*")))


def read_tensor(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def numbered(directory, prefix):
    """input_0.pb, input_1.pb, ..., input_10.pb in that order."""
    paths = glob.glob(os.path.join(directory, f"{prefix}_*.pb"))
    return sorted(paths, key=lambda p: int(p.rsplit("_", 1)[1][:-3]))


def data_sets(case):
    """(inputs, outputs) per data set; None where a file is not a tensor
    (sequences, optionals)."""
    for d in sorted(glob.glob(os.path.join(case, "test_data_set_*"))):
        try:
            yield ([read_tensor(p) for p in numbered(d, "input")],
                   [read_tensor(p) for p in numbered(d, "output")])
        except (ValueError, TypeError, onnx.onnx_cpp2py_export.checker.ValidationError):
            yield None


def compare(got, want):
    """'' when `got` matches `want` as ONNX's runner checks, else why not."""
    if got.shape != want.shape:
        return f"shape {list(got.shape)}, expected {list(want.shape)}"
    if want.dtype == np.bool_:
        want = want.astype(got.dtype)
    try:
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    except AssertionError as e:
        return str(e).strip().splitlines()[-1][:200]
    return ""


def run_case(rpc, case):
    with open(os.path.join(case, "model.onnx"), "rb") as f:
        model_bytes = f.read()
    model = onnx.load_model_from_string(model_bytes)
    ops = sorted({n.op_type for n in model.graph.node})
    initializers = {i.name for i in model.graph.initializer}
    feeds = [v.name for v in model.graph.input if v.name not in initializers]
    fetch = [v.name for v in model.graph.output]

    def outcome(verdict, detail=""):
        return Outcome(os.path.basename(case), ops, verdict, detail)

    for data in data_sets(case):
        if data is None:
            return outcome("unsupported", "test data that are not tensors")
        inputs, outputs = data
        odd = [a.dtype for a in inputs + outputs if a.dtype not in FEEDABLE | {np.dtype(bool)}]
        if odd or any(a.dtype == np.bool_ for a in inputs):
            return outcome("unsupported", f"tensors of type {(odd or [np.bool_])[0]}")
        request = pb.ComputeRequest(onnx_model=model_bytes, fetch=fetch, mode=pb.MODE_EVAL)
        for name, a in zip(feeds, inputs):  # float64 stays float64
            request.feeds[name].CopyFrom(gs.tensor(a, float64=True))
        try:
            result = gs.Result(rpc.Compute(request, timeout=120))
        except grpc.RpcError as e:
            verdict = ("unsupported" if e.code() == grpc.StatusCode.UNIMPLEMENTED
                       else "failed")
            return outcome(verdict, f"{e.code().name}: {e.details()[:300]}")
        for name, want in zip(fetch, outputs):
            why = compare(result.outputs[name], want)
            if why:
                return outcome("failed", f"output '{name}': {why}")
    return outcome("passed")


def run_suites(rpc, suites):
    return [run_case(rpc, case) for suite in suites for case in cases(suite)]


def main(argv):
    suites = argv[1:] or ["node", "pytorch-converted"]
    server = gs.Server("--threads_per_worker=1")
    try:
        outcomes = run_suites(server.rpc, suites)
    finally:
        server.close()
    for o in outcomes:
        print(f"{o.verdict:12} {o.case:55} {','.join(o.ops):40} {o.detail}")
    counts = collections.Counter(o.verdict for o in outcomes)
    print(dict(counts))


if __name__ == "__main__":
    main(sys.argv)
