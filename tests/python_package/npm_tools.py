"""npm packages for the other-language tests, installed into build/ from the
checked-in package.json and package-lock.json (npm ci). A test skips, saying
why, only when node or npm is missing or the registry cannot be reached."""

import os
import shutil
import subprocess

import pytest

from conftest import BUILD_DIR

NETWORK_ERRORS = ("ENOTFOUND", "ECONNREFUSED", "ETIMEDOUT", "EAI_AGAIN", "ECONNRESET",
                  "ENETUNREACH", "network")


def npm_install(source_dir, name):
    """Copies source_dir's package.json and package-lock.json into
    build/<name> and runs npm ci there (skipped when the lock is unchanged
    since the last install); returns that directory."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (tools/install-deps.sh installs Debian's "
                        "nodejs and npm)")
    target = os.path.join(BUILD_DIR, name)
    os.makedirs(target, exist_ok=True)
    stamp = os.path.join(target, "node_modules", ".installed-lock")
    with open(os.path.join(source_dir, "package-lock.json"), "rb") as f:
        lock = f.read()
    if os.path.exists(stamp) and open(stamp, "rb").read() == lock:
        return target
    for file in ("package.json", "package-lock.json"):
        shutil.copy(os.path.join(source_dir, file), target)
    done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                          cwd=target, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        output = done.stdout + done.stderr
        if any(e in output for e in NETWORK_ERRORS):
            pytest.skip(f"npm cannot reach the registry to install {name}'s packages: "
                        f"{output.strip()[-300:]}")
        pytest.fail(f"npm ci in {target} failed:\n{output}")
    with open(stamp, "wb") as f:
        f.write(lock)
    return target
