"""The protos pass `buf lint` with buf.yaml, and `buf breaking` against the
previous commit's protos (the wire contract guarded); buf from npm."""

import os
import shutil
import subprocess

import pytest

from npm_tools import npm_install

ROOT = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def buf():
    return os.path.join(npm_install(os.path.join(ROOT, "tools", "buf"), "buf"),
                        "node_modules", ".bin", "buf")


def run(*args, cwd=ROOT):
    return subprocess.run([buf(), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_buf_lint():
    done = run("lint")
    assert done.returncode == 0, done.stdout + done.stderr


def test_buf_breaking_against_the_previous_commit():
    has_parent = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD~1"], cwd=ROOT,
                                capture_output=True).returncode == 0
    if not has_parent:
        pytest.skip("no previous commit to compare with (a shallow clone?)")
    done = run("breaking", "--against", ".git#ref=HEAD~1,subdir=proto")
    assert done.returncode == 0, done.stdout + done.stderr


def test_buf_breaking_catches_a_renumbered_field(tmp_path):
    shutil.copy(os.path.join(ROOT, "buf.yaml"), tmp_path)
    shutil.copytree(os.path.join(ROOT, "proto"), tmp_path / "proto")
    tensor = tmp_path / "proto" / "gradserve" / "v1" / "tensor.proto"
    text = tensor.read_text()
    assert "  bytes data = 3;" in text
    tensor.write_text(text.replace("  bytes data = 3;", "  bytes data = 7;"))
    done = run("breaking", "--against", os.path.join(ROOT, "proto"), cwd=tmp_path)
    assert done.returncode != 0
    assert 'field "3" with name "data" on message "Tensor" was deleted' in done.stdout
