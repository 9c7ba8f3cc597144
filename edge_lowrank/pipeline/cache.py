"""Resumable stages: each finished stage leaves a small JSON record keyed by a hash of its inputs.

Why: a run takes minutes and CI jobs get killed. A stage writes its artefacts atomically, then its record
(`OUT/.stages/NAME.json`: the key, the produced files with their SHA-256, and the stage's result). On a rerun
a stage is skipped when its record exists, the key matches (same model hash, scheme, budget, epochs, data,
tool version, ...) and every file it produced is still there with the same hash. Anything else reruns it, so
a kill at any point loses at most the stage in flight, and a changed input never reuses a stale result.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from edge_lowrank.fileio import atomic_write_text

RECORD_DIR = ".stages"


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def stage_key(inputs: dict) -> str:
    """A stable hash of a stage's inputs (any JSON-serialisable dict; key order does not matter)."""
    blob = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


class StageCache:
    """The done-records of one output folder."""

    def __init__(self, out_dir):
        self.out = Path(out_dir).absolute()
        self.dir = self.out / RECORD_DIR

    def record_path(self, name: str) -> Path:
        return self.dir / f"{_safe(name)}.json"

    def lookup(self, name: str, key: str) -> dict | None:
        """The stage's result if its record matches `key` and its files are intact, else None."""
        path = self.record_path(name)
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if rec.get("key") != key:
            return None
        for rel, digest in rec.get("files", {}).items():
            f = self.out / rel
            if not f.is_file() or file_sha256(f) != digest:
                return None
        return rec.get("result")

    def store(self, name: str, key: str, result: dict, files=(), seconds: float | None = None) -> None:
        """Write the record after the stage's files are in place (each written atomically by the stage)."""
        hashes = {}
        for f in files:  # absolute, or relative to the output folder
            f = Path(f) if Path(f).is_absolute() else self.out / f
            hashes[f.relative_to(self.out).as_posix()] = file_sha256(f)
        rec = {"stage": name, "key": key, "files": hashes, "result": result, "seconds": seconds}
        atomic_write_text(self.record_path(name), json.dumps(rec, indent=1, sort_keys=True, default=str))

    def done_stages(self) -> list[str]:
        return sorted(p.stem for p in self.dir.glob("*.json")) if self.dir.is_dir() else []
