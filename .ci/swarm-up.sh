#!/usr/bin/env bash
# A two-node Docker Swarm on one machine for the fleet tests (idempotent).
#
# Node 1 is the main engine (DOCKER_HOST or /var/run/docker.sock): `docker swarm init`, manager,
# listening on 127.0.0.1:2377 only. Node 2 is a second dockerd with its own data root, exec root,
# pidfile and socket (bridge and iptables off like the main one), joined as a worker on 127.0.0.2.
# Both daemons share this machine's filesystem: the tests give each node its own models folder.
#
# Prints the second engine's socket URL (unix://...). Undo with .ci/swarm-down.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

NODE2_DIR="${LLMBOX_NODE2_DIR:-/tmp/llmbox-node2}"
NODE2_SOCK="unix://$NODE2_DIR/docker.sock"
DEADLINE_SECONDS="${SWARM_UP_TIMEOUT:-60}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

bash .ci/docker-up.sh >/dev/null 2>&1 || bash .ci/docker-up.sh
n2() { docker -H "$NODE2_SOCK" "$@"; }

wait_for() {  # wait_for <what> <command...>: poll with a deadline
  local what="$1"; shift
  local end=$(( $(date +%s) + DEADLINE_SECONDS ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$end" ]; then
      echo "swarm-up: $what not ready after ${DEADLINE_SECONDS}s" >&2
      tail -n 40 "$NODE2_DIR/dockerd.log" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.5
  done
}

# -- node 2: a second engine ------------------------------------------------------------------
if ! n2 info >/dev/null 2>&1; then
  $SUDO mkdir -p "$NODE2_DIR"
  echo "swarm-up: starting a second dockerd in $NODE2_DIR" >&2
  launcher=""
  command -v setsid >/dev/null 2>&1 && launcher="setsid"
  $SUDO $launcher nohup dockerd --data-root "$NODE2_DIR/data" --exec-root "$NODE2_DIR/exec" \
    --pidfile "$NODE2_DIR/docker.pid" -H "$NODE2_SOCK" --bridge=none --iptables=false \
    >>"$NODE2_DIR/dockerd.log" 2>&1 </dev/null &
  disown || true
  wait_for "second dockerd" n2 info
fi

# -- the swarm --------------------------------------------------------------------------------
state="$(docker info --format '{{.Swarm.LocalNodeState}}')"
if [ "$state" != "active" ]; then
  docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377 >/dev/null
fi
if [ "$(n2 info --format '{{.Swarm.LocalNodeState}}')" != "active" ]; then
  token="$(docker swarm join-token -q worker)"
  n2 swarm join --token "$token" --advertise-addr 127.0.0.2 --listen-addr 127.0.0.2:2377 127.0.0.1:2377 >/dev/null
fi
node2_id="$(n2 info --format '{{.Swarm.NodeID}}')"
ready() { [ "$(docker node inspect -f '{{.Status.State}}' "$node2_id")" = ready ]; }
wait_for "node 2 ready in the swarm" ready
echo "$NODE2_SOCK"
