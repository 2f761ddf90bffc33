#!/usr/bin/env bash
# Undo .ci/swarm-up.sh: node 2 leaves and its dockerd stops; the main engine leaves the swarm.
# Containers that do not belong to swarm services on the main engine are not touched.
set -uo pipefail
NODE2_DIR="${LLMBOX_NODE2_DIR:-/tmp/llmbox-node2}"
NODE2_SOCK="unix://$NODE2_DIR/docker.sock"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

if docker -H "$NODE2_SOCK" info >/dev/null 2>&1; then
  docker -H "$NODE2_SOCK" swarm leave --force >/dev/null 2>&1 || true
fi
if [ -s "$NODE2_DIR/docker.pid" ]; then
  pid="$(cat "$NODE2_DIR/docker.pid")"
  $SUDO kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
fi
if [ "$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)" != "inactive" ]; then
  docker swarm leave --force >/dev/null 2>&1 || true
fi
echo "swarm-down: done" >&2
