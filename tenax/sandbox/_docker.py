"""What the sandbox container and the image build share: the engine client and the image's names.

Both ``docker_sandbox`` and ``image`` import from here (and never from each other).
"""

from __future__ import annotations

import os

from tenax.core.errors import DockerUnavailable

DEFAULT_IMAGE = "tenax-sandbox:default"
SANDBOX_UID = 10001
SANDBOX_GID = 10001
SANDBOX_USER = "tenax"
WORKDIR = "/workspace"


def ensure_docker():
    """Return a docker client whose engine answered a ping, or raise DockerUnavailable."""
    import docker
    from docker.errors import DockerException

    target = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except (DockerException, OSError) as exc:
        raise DockerUnavailable(
            f"no Docker engine answers at {target} ({exc.__class__.__name__}: {exc}). "
            "Run `make setup` (or `sudo scripts/ensure-docker.sh`) to install and start dockerd, "
            "or start it yourself / set DOCKER_HOST to a running engine."
        ) from exc
    return client
