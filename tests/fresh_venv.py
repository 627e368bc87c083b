"""What the tests that build a fresh virtual environment share (`test_install`,
`test_pyfunc_portable`): selection by `-m install`, running a command with its output shown
on failure, finding uv, a clean environment and a free loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

INSTALL_TIMEOUT = 1800  # a cold cache downloads ~1 GB (xgboost's NCCL is most of it)
COMMAND_TIMEOUT = 600


def selected(config: pytest.Config) -> bool:
    """Whether `-m install` asked for the fresh-venv tests (they never run by default)."""
    return "install" in (config.getoption("markexpr") or "")


def run(args: list, *, cwd: Path, env: dict | None = None,
        timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess:
    """Run a command; on failure the assertion shows its exit code and the end of its output."""
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"`{' '.join(map(str, args))}` (in {cwd}) exited {proc.returncode}\n"
        f"--- stdout (end)\n{proc.stdout[-3000:]}\n--- stderr (end)\n{proc.stderr[-6000:]}")
    return proc


def find_uv() -> str | None:
    """uv beside the running interpreter (`make` installs it into .venv) or on PATH."""
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else shutil.which("uv")


def clean_env(**extra: str) -> dict:
    """This process's environment without anything that could reach the checkout's code."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSAFEPATH")}
    return {**env, **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
