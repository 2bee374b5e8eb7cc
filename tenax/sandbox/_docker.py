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


_API_VERSIONS: dict[str, str] = {}  # engine address -> its API version, as learnt by this process


def ensure_docker():
    """Return a docker client whose engine answered a ping, or raise DockerUnavailable.

    The engine's API version is asked once per process and engine (docker-py asks ``/version``
    for each new client, 15-20 ms here: a cold start makes two clients); a client made with a
    version the engine no longer takes (it was downgraded) asks again."""
    import docker
    from docker.errors import DockerException

    target = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        try:
            client = docker.from_env(timeout=60, version=_API_VERSIONS.get(target))
            client.ping()
        except DockerException:
            if _API_VERSIONS.pop(target, None) is None:
                raise
            client = docker.from_env(timeout=60)
            client.ping()
        _API_VERSIONS[target] = client.api.api_version
    except (DockerException, OSError) as exc:
        raise DockerUnavailable(
            f"no Docker engine answers at {target} ({exc.__class__.__name__}: {exc}). "
            "Run `make setup` (or `sudo scripts/ensure-docker.sh`) to install and start dockerd, "
            "or start it yourself / set DOCKER_HOST to a running engine."
        ) from exc
    return client
