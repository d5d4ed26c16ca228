"""Debian packages a test needs and installs itself where it runs as root: SLURM for
tests/runs/test_slurm.py, Chromium for the circuit view's browser test. Where they cannot
be had (not root, no apt-get, not installable) the test skips with the reason; in CI
(CI=true) as root with apt-get, that is a failure instead (`must_run`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


class Unavailable(RuntimeError):
    """The packages cannot be had here; the message says why (the test skips with it)."""


def missing(binaries) -> list[str]:
    return [b for b in binaries if shutil.which(b) is None]


def must_run() -> bool:
    """CI as root with apt-get: the packages can be had, so not getting them is a failure."""
    return (os.environ.get("CI", "").lower() == "true" and os.geteuid() == 0
            and shutil.which("apt-get") is not None)


def unavailable(what: str, reason: str):
    """Skip (fail in CI, `must_run`) a test that cannot have what it needs."""
    if must_run():
        pytest.fail(f"{what} cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"{what}: {reason}")


def apt_install(packages, binaries, timeout: float = 600) -> str:
    """Install `packages` with apt-get (no recommended packages) unless every one of
    `binaries` is already on PATH; what was done. The packages' maintainer scripts may
    not start system-wide daemons (policy-rc.d). Raises Unavailable."""
    names = " ".join(packages)
    if not missing(binaries):
        return f"{names} already installed"
    if os.geteuid() != 0:
        raise Unavailable(f"not root: cannot apt-get install {names}")
    if shutil.which("apt-get") is None:
        raise Unavailable(f"no apt-get: {names} are installed from Debian packages")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    policy = Path("/usr/sbin/policy-rc.d")
    own_policy = not policy.exists()
    if own_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    out = ""
    try:
        for attempt in ([install], [["apt-get", "update", "-q"], install]):
            for cmd in attempt:
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                      timeout=timeout)
                out = proc.stdout[-1500:] + proc.stderr[-1500:]
                if proc.returncode != 0:
                    break
            if proc.returncode == 0 and not missing(binaries):
                return f"installed {names} with apt-get"
    except subprocess.TimeoutExpired:
        raise Unavailable(f"apt-get install {names} timed out") from None
    finally:
        if own_policy:
            policy.unlink(missing_ok=True)
    raise Unavailable(f"apt-get install {names} failed:\n{out.strip()}")
