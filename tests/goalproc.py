"""`tenax goal` as a separate process, for the tests that crash or signal it on purpose."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

KEY = "sim-test-key"
CHECK = "grep -qx fixed status.txt"
OBJECTIVE = "Make status.txt say fixed."


def wait_for(pred: Callable[[], bool], timeout: float = 60.0) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.2)
    return False


def goal_env(db: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "TENAX_DB": f"sqlite:///{db}", "ANTHROPIC_API_KEY": KEY, **extra}


def start_goal_process(workspace: Path, base_url: str, env: dict[str, str],
                       model: str = "anthropic:claude-sonnet-4-6") -> subprocess.Popen:
    """`python -m tenax.cli goal OBJECTIVE --check CHECK` against the simulator at base_url."""
    return subprocess.Popen(
        [sys.executable, "-m", "tenax.cli", "goal", OBJECTIVE, "--workspace", str(workspace),
         "--check", CHECK, "--model", model, "--base-url", base_url],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def kill_9_when(proc: subprocess.Popen, pred: Callable[[], bool], timeout: float = 60.0) -> None:
    """Wait until pred() holds, then SIGKILL the process; fail with its output if it died first."""
    try:
        assert wait_for(pred, timeout), proc.stdout.read() if proc.poll() is not None else "no progress"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
