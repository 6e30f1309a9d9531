"""gradserve against PyTorch's own OpInfo samples (see opinfo.py): every
sample of every OpInfo that maps to a gradserve op is translated to a graph
and compared with float64 PyTorch autograd. The table (pass / refused /
unsupported / wrong / invalid per OpInfo) is printed; run pytest with -s to
see it, or `python3 tests/python/opinfo.py --verbose`."""

import pytest

import opinfo


@pytest.fixture(scope="module")
def outcomes(server):
    return opinfo.run_all(server)


def test_every_mapped_opinfo_has_samples(outcomes):
    measured = {o.opinfo for o in outcomes}
    assert measured == {opinfo.opinfo_id(o) for o in opinfo.mapped_opinfos()}
    assert len(measured) == len(opinfo.TRANSLATORS)


def test_no_sample_gets_a_wrong_answer(outcomes):
    text, _ = opinfo.table(outcomes)
    print("\n" + text)
    wrong = [str(o) for o in outcomes if o.klass == "wrong"]
    assert not wrong, "\n".join(wrong)


def test_no_sample_within_the_contract_is_refused(outcomes):
    """Every sample that uses only what the op table promises (unbatched
    inputs, torch.matmul's broadcasting, spatial class losses, any finite
    momentum or epsilon...) computes."""
    refused = [str(o) for o in outcomes if o.klass == "refused"]
    assert not refused, "\n".join(refused)


def test_the_server_still_serves(server, outcomes):
    assert server.alive(), server.output()
    assert server.serving()


def test_a_mistranslated_op_is_caught(server):
    """The comparison can fail: Exp's samples sent as Sigmoid are wrong
    (all but the empty one)."""
    exp = [o for o in opinfo.mapped_opinfos() if o.name == "exp"]
    saved = opinfo.TRANSLATORS[("exp", "")]
    opinfo.TRANSLATORS[("exp", "")] = opinfo.unary("Sigmoid")
    try:
        outcomes = opinfo.run_all(server, exp, dtypes=[opinfo.torch.float32])
    finally:
        opinfo.TRANSLATORS[("exp", "")] = saved
    assert [o.klass for o in outcomes] == ["wrong", "pass", "wrong"], \
        "\n".join(map(str, outcomes))
