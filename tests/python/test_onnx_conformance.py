"""ONNX's backend test data (libonnx-testdata: data/node, data/pytorch-converted)
through the ONNX import: a case passes (its outputs within the case's
tolerance) or is refused as unsupported (UNIMPLEMENTED, or tensors gradserve
does not carry); none may fail, but the known ones below."""

import collections

import pytest

import onnx_conformance as conformance

CASES = [case for suite in conformance.SUITES for case in conformance.cases(suite)]

# Cases known to fail, each with its reason (none now: test_log_example was
# oneDNN's approximate log, log(1) = -1.4e-6; float32 Log is libm's now).
KNOWN_FAILURES = set()

# Cases that passed when this was written: fewer means the import regressed.
MIN_PASSED = 375


@pytest.fixture(scope="module")
def outcomes(quick_server):
    return {o.case: o for o in conformance.run_suites(quick_server.rpc, conformance.SUITES)}


@pytest.mark.parametrize("case", CASES, ids=[c.rsplit("/", 1)[1] for c in CASES])
def test_case_passes_or_is_unsupported(outcomes, case):
    o = outcomes[case.rsplit("/", 1)[1]]
    if o.case in KNOWN_FAILURES:
        assert o.verdict == "failed", f"{o.case} is fixed: drop it from KNOWN_FAILURES"
        pytest.xfail(o.detail)
    assert o.verdict in ("passed", "unsupported"), f"{o.ops}: {o.detail}"


def test_the_passed_count_does_not_shrink(outcomes):
    counts = collections.Counter(o.verdict for o in outcomes.values())
    assert counts["passed"] >= MIN_PASSED, dict(counts)


def test_the_docs_table_is_current(outcomes):
    """docs/onnx_conformance.md has every case's verdict as it is now
    (regenerate it: onnx_conformance.py --markdown)."""
    documented = conformance.doc_verdicts()
    now = {name: o.verdict for name, o in outcomes.items()}
    changed = sorted(c for c in now if documented.get(c) != now[c])
    assert not changed, f"{len(changed)} cases changed, e.g. {changed[:5]}: regenerate"
    assert set(documented) == set(now)
