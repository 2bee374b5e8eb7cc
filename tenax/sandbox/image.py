"""Offline build of the default sandbox image.

No container registry is reachable on the machines tenax targets, so the image is made from
Debian packages only: ``debootstrap --variant=minbase`` writes a root filesystem into a
temporary directory, we add an unprivileged ``tenax`` user (uid/gid 10001) and ``/workspace``,
drop apt caches, then stream ``tar -C rootfs -c .`` into ``docker import`` with the image
config set through ``--change``.  Needs root (debootstrap chroots) and the ``debootstrap``
binary; each missing piece raises an :class:`ImageBuildError` that says what to do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from tenax.core.errors import SandboxError
from tenax.sandbox._docker import DEFAULT_IMAGE, SANDBOX_GID, SANDBOX_UID, SANDBOX_USER, ensure_docker

__all__ = ["DEFAULT_IMAGE", "SANDBOX_GID", "SANDBOX_UID", "SANDBOX_USER", "ImageBuildError", "build_image", "image_exists"]
PACKAGES = ("bash", "coreutils", "python3", "git", "ca-certificates", "procps")
IMAGE_CHANGES = (
    f"USER {SANDBOX_UID}:{SANDBOX_GID}",
    "WORKDIR /workspace",
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    f"ENV HOME=/home/{SANDBOX_USER}",
    "LABEL tenax.image=1",
    'CMD ["sleep","infinity"]',
)


class ImageBuildError(SandboxError):
    """The sandbox image could not be built (missing tool, not root, debootstrap failed...)."""


def image_exists(tag: str = DEFAULT_IMAGE, client=None) -> bool:
    """True when the local Docker engine has an image called ``tag``."""
    import docker
    from docker.errors import ImageNotFound

    if client is None:
        client = ensure_docker()
    try:
        client.images.get(tag)
        return True
    except ImageNotFound:
        return False
    except docker.errors.APIError as exc:  # e.g. an invalid reference format
        if exc.status_code in (400, 404):
            return False
        raise


def _run(cmd: list[str], what: str, log: Callable[[str], None], *, tail: int = 30) -> None:
    """Run ``cmd`` with its output captured; on failure raise with the output's tail."""
    lines: deque[str] = deque(maxlen=tail)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
    rc = proc.wait()
    if rc != 0:
        raise ImageBuildError(f"{what} failed (exit {rc}): {' '.join(cmd)}\n" + "\n".join(lines))


def _mounts_under(root: Path) -> list[str]:
    """Mount points inside ``root`` (debootstrap can leave /proc or /sys mounted on failure)."""
    prefix = str(root.resolve()) + "/"
    found = []
    try:
        with open("/proc/mounts", encoding="utf-8") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) > 1:
                    mnt = fields[1].replace("\\040", " ")
                    if mnt.startswith(prefix):
                        found.append(mnt)
    except OSError:
        pass
    return sorted(found, key=len, reverse=True)  # deepest first


def _safe_rmtree(root: Path, log: Callable[[str], None]) -> None:
    for mnt in _mounts_under(root):
        subprocess.run(["umount", "-l", mnt], check=False)
    if _mounts_under(root):
        log(f"warning: {root} still has mounts; left in place, remove it by hand")
        return
    shutil.rmtree(root, ignore_errors=True)


def _add_user(rootfs: Path) -> None:
    etc = rootfs / "etc"
    passwd = etc / "passwd"
    group = etc / "group"
    shadow = etc / "shadow"
    if f"\n{SANDBOX_USER}:" not in "\n" + passwd.read_text():
        with passwd.open("a") as fh:
            fh.write(f"{SANDBOX_USER}:x:{SANDBOX_UID}:{SANDBOX_GID}:tenax sandbox:/home/{SANDBOX_USER}:/bin/bash\n")
    if f"\n{SANDBOX_USER}:" not in "\n" + group.read_text():
        with group.open("a") as fh:
            fh.write(f"{SANDBOX_USER}:x:{SANDBOX_GID}:\n")
    if shadow.exists() and f"\n{SANDBOX_USER}:" not in "\n" + shadow.read_text():
        with shadow.open("a") as fh:
            fh.write(f"{SANDBOX_USER}:!:19000:0:99999:7:::\n")
    for d in (rootfs / "home" / SANDBOX_USER, rootfs / "workspace"):
        d.mkdir(parents=True, exist_ok=True)
        os.chown(d, SANDBOX_UID, SANDBOX_GID)
        d.chmod(0o755)
    # Make git usable on a bind-mounted workspace owned by another uid.
    gitconfig = etc / "gitconfig"
    with gitconfig.open("a") as fh:
        fh.write("[safe]\n\tdirectory = *\n[init]\n\tdefaultBranch = main\n")


def _clean(rootfs: Path) -> None:
    for pattern_dir, keep in (
        (rootfs / "var/cache/apt/archives", {"partial", "lock"}),
        (rootfs / "var/lib/apt/lists", {"partial", "lock"}),
        (rootfs / "var/cache/apt", {"archives"}),
    ):
        if not pattern_dir.is_dir():
            continue
        for child in pattern_dir.iterdir():
            if child.name in keep:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
    for log_dir in (rootfs / "var/log",):
        for child in log_dir.rglob("*"):
            if child.is_file():
                child.unlink(missing_ok=True)


def _import(rootfs: Path, tag: str) -> None:
    cmd = ["docker", "import"]
    for change in IMAGE_CHANGES:
        cmd += ["--change", change]
    cmd += ["-", tag]
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    imp = subprocess.Popen(cmd, stdin=tar.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert tar.stdout is not None
    tar.stdout.close()  # so tar gets SIGPIPE if docker import dies
    imp_out, imp_err = imp.communicate()
    tar_err = tar.stderr.read() if tar.stderr else b""
    tar_rc = tar.wait()
    if tar_rc != 0:
        raise ImageBuildError(f"tar of the root filesystem failed (exit {tar_rc}): {tar_err.decode(errors='replace')}")
    if imp.returncode != 0:
        raise ImageBuildError(
            f"`docker import` failed (exit {imp.returncode}): {(imp_err or imp_out).decode(errors='replace').strip()}"
        )


def build_image(
    tag: str = DEFAULT_IMAGE,
    *,
    force: bool = False,
    suite: str = "bookworm",
    mirror: str | None = None,
    log: Callable[[str], None] = print,
) -> str:
    """Build the sandbox image ``tag`` from Debian packages; return the tag.

    Does nothing when the image already exists, unless ``force``. Raises
    :class:`ImageBuildError` when not root, when ``debootstrap``/``tar``/``docker`` is missing,
    or when a step fails (with the failing tool's output tail), and
    :class:`tenax.core.errors.DockerUnavailable` when no engine answers.
    """
    client = ensure_docker()
    if not force and image_exists(tag, client):
        log(f"image {tag} already exists (use force=True / --force to rebuild)")
        return tag
    if os.geteuid() != 0:
        raise ImageBuildError(
            "building the sandbox image needs root (debootstrap chroots into the new filesystem); "
            "run `sudo tenax sandbox build` or `make setup`"
        )
    for tool, hint in (
        ("debootstrap", "install it with `apt-get install -y debootstrap` (or run scripts/ensure-docker.sh)"),
        ("tar", "install it with `apt-get install -y tar`"),
        ("docker", "install the Docker CLI with `apt-get install -y docker.io` (or run `make setup`)"),
    ):
        if shutil.which(tool) is None:
            raise ImageBuildError(f"`{tool}` is not installed; {hint}")

    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="tenax-image-"))
    rootfs = workdir / "rootfs"
    try:
        cmd = ["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES), suite, str(rootfs)]
        if mirror:
            cmd.append(mirror)
        log(f"debootstrap {suite} into {rootfs} (packages: {', '.join(PACKAGES)}) ...")
        _run(cmd, "debootstrap", log)
        log(f"adding user {SANDBOX_USER} ({SANDBOX_UID}:{SANDBOX_GID}) and /workspace")
        _add_user(rootfs)
        log("cleaning apt caches and logs")
        _clean(rootfs)
        log(f"importing into docker as {tag}")
        _import(rootfs, tag)
    finally:
        _safe_rmtree(workdir, log)
    log(f"built {tag} in {time.monotonic() - started:.0f}s")
    return tag
