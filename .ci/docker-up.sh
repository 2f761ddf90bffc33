#!/usr/bin/env bash
# Bring up a local Docker engine for the container tests (idempotent).
#
# - installs docker.io and busybox-static from Debian when missing;
# - starts dockerd with the bridge and iptables OFF (--bridge=none --iptables=false):
#   test containers use network_mode "host" or "none" only, so no traffic ever goes to a
#   172.x/10.x/192.168.x address;
# - waits (deadline, default 60 s) for `docker info` to succeed.
set -euo pipefail

DEADLINE_SECONDS="${DOCKER_UP_TIMEOUT:-60}"
LOG="${DOCKERD_LOG:-/tmp/dockerd.log}"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update
    apt_updated=1
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

if ! command -v dockerd >/dev/null 2>&1; then
  echo "docker-up: dockerd missing; installing docker.io" >&2
  apt_install docker.io
fi

if ! dpkg -s busybox-static >/dev/null 2>&1; then
  echo "docker-up: installing busybox-static" >&2
  apt_install busybox-static
fi

if docker info >/dev/null 2>&1; then
  echo "docker-up: engine already running" >&2
  exit 0
fi

start_dockerd() {
  echo "docker-up: starting dockerd (log: $LOG)" >&2
  # setsid: its own session, so the engine outlives the shell/test run that started it.
  local launcher=""
  if command -v setsid >/dev/null 2>&1; then
    launcher="setsid"
  fi
  $SUDO $launcher nohup dockerd --bridge=none --iptables=false >>"$LOG" 2>&1 </dev/null &
  disown || true
}

dockerd_running() {
  pgrep -x dockerd >/dev/null 2>&1
}

starts=0
if dockerd_running; then
  echo "docker-up: a dockerd process exists; waiting for it to answer" >&2
else
  start_dockerd
  starts=1
fi

end=$(( $(date +%s) + DEADLINE_SECONDS ))
until docker info >/dev/null 2>&1; do
  if [ "$(date +%s)" -ge "$end" ]; then
    echo "docker-up: engine not ready after ${DEADLINE_SECONDS}s; tail of $LOG:" >&2
    tail -n 50 "$LOG" >&2 2>/dev/null || true
    exit 1
  fi
  # A dockerd that was shutting down (or crashed at start) is gone: start one (max 3 tries).
  if ! dockerd_running && [ "$starts" -lt 3 ]; then
    start_dockerd
    starts=$((starts + 1))
  fi
  sleep 0.5
done
echo "docker-up: engine ready" >&2
