"""The CLI as a user meets it: real subprocesses, real files, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def tenax(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "tenax.cli", *args], env={**base, **(env or {})}, capture_output=True, text=True,
        timeout=timeout,
    )


@pytest.fixture
def db(tmp_path: Path) -> dict:
    return {"TENAX_DB": f"sqlite:///{tmp_path / 'cli.db'}"}


def test_unknown_model_prefix(tmp_path, db):
    r = tenax("goal", "x", "--workspace", str(tmp_path), "--model", "gemini:pro", env={**db, "ANTHROPIC_API_KEY": "k"})
    assert r.returncode == 2
    assert "unknown model provider 'gemini'" in r.stderr and "anthropic:" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_api_key(tmp_path, db):
    r = tenax("goal", "x", "--workspace", str(tmp_path), "--model", "anthropic:claude-sonnet-4-6", env=db)
    assert r.returncode == 2 and "ANTHROPIC_API_KEY" in r.stderr
    r = tenax("goal", "x", "--workspace", str(tmp_path), "--model", "openai:gpt-5.5", env=db)
    assert r.returncode == 2 and "OPENAI_API_KEY" in r.stderr


def test_missing_workspace(tmp_path, db):
    r = tenax("goal", "x", "--workspace", str(tmp_path / "nope"), env={**db, "ANTHROPIC_API_KEY": "k"})
    assert r.returncode == 2 and "does not exist" in r.stderr and "nope" in r.stderr


@pytest.mark.parametrize("url", ["notaurl", "postgres//x", "mysql+nosuchdriver://u@h/db"])
def test_malformed_tenax_db(url):
    r = tenax("ls", env={"TENAX_DB": url})
    assert r.returncode == 2 and "TENAX_DB" in r.stderr
    assert "Traceback" not in r.stderr


def test_no_docker_engine(tmp_path, db):
    r = tenax("goal", "x", "--workspace", str(tmp_path),
              env={**db, "ANTHROPIC_API_KEY": "k", "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    assert r.returncode == 2
    assert "Docker" in r.stderr and "no-docker.sock" in r.stderr
    assert "Traceback" not in r.stderr


def test_unknown_goal_id(db):
    r = tenax("show", "ffffffff", env=db)
    assert r.returncode == 2 and "no goal matches" in r.stderr


@pytest.mark.docker
def test_demo_runs_end_to_end(tmp_path, db):
    r = tenax("demo", env=db)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "SIMULATED" in out and "succeeded" in out
    assert "return a + b" in out and "min(x, hi)" in out
    assert "check `python3 -m unittest -q` failed" in out  # it failed once before succeeding
    transcript = [line for line in out.splitlines() if line.startswith("transcript:")][0].split(":", 1)[1].strip()
    assert Path(transcript).exists() and "complete_goal" in Path(transcript).read_text()
    ls = tenax("ls", env=db)
    assert "succeeded" in ls.stdout
    gid = ls.stdout.split("\n")[1].split()[0]
    show = tenax("show", gid, env=db)
    assert show.returncode == 0 and "cached input" in show.stdout and "succeeded" in show.stdout


@pytest.mark.parametrize("net", ["host", "container:abc"])
def test_host_network_is_refused(tmp_path, db, net):
    r = tenax("goal", "x", "--workspace", str(tmp_path), "--network", net, env={**db, "ANTHROPIC_API_KEY": "k"})
    assert r.returncode == 2 and "is refused" in r.stderr and "bridge" in r.stderr
