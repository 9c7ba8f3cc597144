#!/usr/bin/env bash
# One-time, idempotent set-up on a Debian machine: Debian packages (when root), a .venv with the project
# installed in editable mode. A second run takes about a second: it only checks stamps.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-dev}
# Debian packages: the data set, QEMU user mode with plugin support and what builds its plugin and the
# aarch64 sysroot, and an sshd for the board-target tests.
DEB_PACKAGES=(dataset-fashion-mnist qemu-user mmdebstrap libglib2.0-dev gcc make pkg-config dpkg-dev
              openssh-server openssh-client python3-venv)

missing=()
for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "setup: installing Debian packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "setup: not root; these Debian packages are missing (some features will be skipped): ${missing[*]}" >&2
    fi
fi

PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV"
    "$PY" -m venv "$VENV"
fi
# The stamp says HASH-EXTRAS of the last install; extras already installed for the same pyproject.toml are
# kept (union), so `make demo` (dev) and `make test` (dev,ray) do not reinstall each other's.
stamp="$VENV/.edge-lowrank-installed"
hash="$(cat pyproject.toml | sha256sum | cut -c1-16)"
have="$(cat "$stamp" 2>/dev/null || true)"
extras="$EXTRAS"
[ "${have%%-*}" = "$hash" ] && extras="${have#*-},$EXTRAS"
extras="$(echo "$extras" | tr ',' '\n' | sed '/^$/d' | sort -u | paste -sd, -)"
if [ "$have" != "$hash-$extras" ]; then
    echo "setup: installing edge-lowrank[$extras] into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e ".[$extras]"
    echo "$hash-$extras" > "$stamp"
fi
