"""Where a daemon keeps its files: all under ``$TENAX_HOME`` (see ``tenax.config.tenax_home``), so two
installations with different homes never see each other. And the one log-line format of the
daemon and its workers."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from tenax.config import tenax_home

BUSY_EXIT = 3  # a worker's exit code when another runner drives its goal


def home() -> Path:
    path = tenax_home()
    path.mkdir(parents=True, exist_ok=True)
    return path


def pid_file() -> Path:
    return home() / "daemon.pid"


def lock_file() -> Path:
    return home() / "daemon.lock"


def log_file() -> Path:
    return home() / "daemon.log"


def worker_log(goal_id: str) -> Path:
    path = home() / "logs"
    path.mkdir(exist_ok=True)
    return path / f"{goal_id}.log"


def worktrees() -> Path:
    return home() / "worktrees"


def log(message: str) -> None:
    print(f"{datetime.now():%Y-%m-%d %H:%M:%S} {message}", flush=True)
