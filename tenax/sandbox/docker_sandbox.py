"""Hardened Docker sandbox (docker-py)."""

from __future__ import annotations

import os

import docker
from docker.errors import DockerException

from tenax.errors import DockerUnavailable


def _docker_target() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def ensure_docker() -> docker.DockerClient:
    """Return a docker client whose engine answered a ping, or raise DockerUnavailable."""
    target = _docker_target()
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except (DockerException, OSError) as exc:
        raise DockerUnavailable(
            f"no Docker engine answers at {target} ({exc.__class__.__name__}: {exc}). "
            "Run `make setup` (or `sudo scripts/ensure-docker.sh`) to install and start dockerd, "
            "or start it yourself / set DOCKER_HOST to a running engine."
        ) from exc
    return client
