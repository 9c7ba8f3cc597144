"""Where the project keeps what it downloads or builds once (sysroots, QEMU plugin, cost tables)."""

import os
from pathlib import Path

CACHE_ENV = "EDGE_LOWRANK_CACHE"


def cache_dir(*parts: str) -> Path:
    """Return (and create) a folder under the cache root.

    The root is `$EDGE_LOWRANK_CACHE` if set, else `$XDG_CACHE_HOME/edge-lowrank`, else
    `~/.cache/edge-lowrank`.
    """
    root = os.environ.get(CACHE_ENV)
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(xdg, "edge-lowrank")
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
