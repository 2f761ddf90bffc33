#!/usr/bin/env bash
# Images without a registry (idempotent):
#  1. llmbox-base:bookworm - Debian minbase + python3 made with debootstrap and `docker import`;
#     the root filesystem tarball is cached outside the clone (~/.cache/llmbox-base), like N8n.
#  2. the project image built FROM it (`docker build --network host`, BASE_IMAGE build argument;
#     the Dockerfile itself still defaults to the official Python image).
# Usage: .ci/build-images.sh [project-tag]   (default llm-box-admin-api:local)
#        .ci/build-images.sh --base-only      (the base image only)
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${LLMBOX_BASE_CACHE:-$HOME/.cache/llmbox-base}"
BASE_TAG="${LLMBOX_BASE_IMAGE:-llmbox-base:bookworm}"
PROJECT_TAG="${1:-llm-box-admin-api:local}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
TARBALL="$CACHE/bookworm-python3.tar"

if ! docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
  if [ ! -s "$TARBALL" ]; then
    if ! command -v debootstrap >/dev/null 2>&1; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    mkdir -p "$CACHE"
    work="$(mktemp -d "$CACHE/root.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    echo "build-images: debootstrap bookworm into $work" >&2
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$work" "$MIRROR" \
      >"$CACHE/debootstrap.log" 2>&1 || { tail -n 30 "$CACHE/debootstrap.log" >&2; exit 1; }
    rm -rf "$work"/var/cache/apt/archives/*.deb "$work"/var/lib/apt/lists/*
    tar --numeric-owner -C "$work" -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
  fi
  docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' "$TARBALL" "$BASE_TAG" >/dev/null
fi

[ "$PROJECT_TAG" = "--base-only" ] && exit 0
if ! docker image inspect "$PROJECT_TAG" >/dev/null 2>&1 || [ "${REBUILD:-0}" = 1 ]; then
  # The wheels come from this machine's pip (its index, proxy and CA settings); the build itself
  # needs no network. The dependencies' wheels are cached beside the base tarball and fetched again
  # only when pyproject.toml changes; the project's wheel is built every time, offline.
  PY="${PYTHON:-python3}"
  [ -x .venv/bin/python ] && PY=.venv/bin/python
  stamp="$CACHE/wheels/.pyproject.sha256"
  want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
  rm -rf build/wheelhouse && mkdir -p build/wheelhouse/deps build/wheelhouse/project
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    rm -rf "$CACHE/wheels" && mkdir -p "$CACHE/wheels"
    "$PY" -m pip wheel -q --wheel-dir "$CACHE/wheels" . 'setuptools>=68' wheel >&2
    rm -f "$CACHE"/wheels/llm_box_admin_api-*.whl
    echo "$want" >"$stamp"
  fi
  "$PY" -m pip wheel -q --no-index --find-links "$CACHE/wheels" --no-deps --wheel-dir build/wheelhouse/project . >&2
  for w in "$CACHE"/wheels/*.whl; do
    case "$(basename "$w")" in setuptools-* | wheel-*) continue ;; esac
    cp -l "$w" build/wheelhouse/deps/ 2>/dev/null || cp "$w" build/wheelhouse/deps/
  done
  echo "build-images: building $PROJECT_TAG from $BASE_TAG" >&2
  docker build -q --network host --build-arg "BASE_IMAGE=$BASE_TAG" --build-arg OFFLINE=1 \
    -f api/Dockerfile -t "$PROJECT_TAG" . >/dev/null
  rm -rf build/wheelhouse
fi
echo "$PROJECT_TAG"
