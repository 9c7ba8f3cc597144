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
stamp="$VENV/.edge-lowrank-installed"
want="$(cat pyproject.toml | sha256sum | cut -c1-16)-$EXTRAS"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup: installing edge-lowrank[$EXTRAS] into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e ".[$EXTRAS]"
    echo "$want" > "$stamp"
fi
