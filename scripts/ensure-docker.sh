#!/usr/bin/env bash
# Make sure a Docker engine answers (idempotent). Run as root by `make setup` and CI on a fresh
# Debian 12 machine: installs docker.io (+ debootstrap for the offline image build) when missing,
# starts dockerd in the background and waits for it. Exit 0 when `docker info` works, 1 otherwise.
set -uo pipefail

LOG="${TENAX_DOCKERD_LOG:-/var/log/tenax-dockerd.log}"
WAIT_S="${TENAX_DOCKERD_WAIT:-60}"

say() { echo "ensure-docker: $*"; }
die() { echo "ensure-docker: ERROR: $*" >&2; exit 1; }

engine_up() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

need_pkgs=()
# debootstrap builds the offline sandbox image; needed even where an engine already answers
command -v debootstrap >/dev/null 2>&1 || need_pkgs+=(debootstrap)
if ! engine_up; then
    command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
    command -v docker >/dev/null 2>&1 || { [[ " ${need_pkgs[*]-} " == *" docker.io "* ]] || need_pkgs+=(docker.io); }
elif ((${#need_pkgs[@]} == 0)); then
    say "docker engine already answers; nothing to do"
    exit 0
fi

if ((${#need_pkgs[@]})); then
    [[ $(id -u) -eq 0 ]] || die "must run as root to install ${need_pkgs[*]} (try: sudo $0)"
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install ${need_pkgs[*]} by hand"
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null || die "apt-get update failed"
    say "apt-get install -y ${need_pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >/dev/null \
        || die "apt-get install ${need_pkgs[*]} failed"
fi

if engine_up; then  # already up, or the package's service started it
    say "docker engine answers"
    exit 0
fi

[[ $(id -u) -eq 0 ]] || die "no docker engine answers and starting dockerd needs root (try: sudo $0)"

if pgrep -x dockerd >/dev/null 2>&1; then
    say "dockerd is already running (pid $(pgrep -x dockerd | head -1)); waiting for it to answer"
else
    say "starting dockerd in the background (log: $LOG)"
    mkdir -p "$(dirname "$LOG")"
    nohup setsid dockerd >>"$LOG" 2>&1 </dev/null &
fi

say "waiting up to ${WAIT_S}s for docker info"
for ((i = 0; i < WAIT_S; i++)); do
    if engine_up; then
        say "docker engine is up after ${i}s"
        exit 0
    fi
    sleep 1
done

echo "ensure-docker: last lines of $LOG:" >&2
tail -n 30 "$LOG" >&2 2>/dev/null || true
die "dockerd did not answer within ${WAIT_S}s; see $LOG (common causes: no cgroup/overlay support in this VM, another dockerd holding /var/run/docker.pid)"
