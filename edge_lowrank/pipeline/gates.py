"""Budget gates for build pipelines: pick the best variant that meets them, or say which gate failed by how much.

Why: a CI job wants one exit code and one line. "Best" is the fastest variant on the host (lowest median
latency) among those that pass every gate; ties go to the higher top-1, then the smaller file. When none
passes, the message names the variant closest to passing (fewest failed gates, then smallest relative
shortfall) and each gate it misses, with the value reached and the shortfall. On unlabelled data ("agreement"
mode) the accuracy gate applies to top-1 agreement with the original float model, and its lines say so.
"""

from __future__ import annotations

import dataclasses

# name: (flag, unit, variant field, True when larger is better)
GATES = {
    "max_accuracy_drop": ("--max-accuracy-drop", "pp", "accuracy_drop_pp", False),
    "min_speedup": ("--min-speedup", "x", "speedup", True),
    "max_size_kb": ("--max-size-kb", "KB", "size_kb", False),
    "max_arena_kb": ("--max-arena-kb", "KB", "arena_kb", False),
}


@dataclasses.dataclass(frozen=True)
class GateMiss:
    gate: str
    limit: float
    value: float | None  # None: the figure could not be measured for this variant
    accuracy: str = "top1"  # top1 | agreement: what the accuracy gate's points are of

    @property
    def shortfall(self) -> float | None:
        return None if self.value is None else abs(self.value - self.limit)

    def describe(self) -> str:
        flag, unit, _, _ = GATES[self.gate]
        of = ("; points of top-1 agreement with the original float model"
              if self.gate == "max_accuracy_drop" and self.accuracy == "agreement" else "")
        if self.value is None:
            return f"{flag} {self.limit:g} (not measured for it)"
        reach = "reaches" if GATES[self.gate][3] else "has"
        return f"{flag} {self.limit:g} by {self.shortfall:.3g} {unit} ({reach} {self.value:.3g} {unit}{of})"


@dataclasses.dataclass(frozen=True)
class GateOutcome:
    gates: dict
    best: str | None
    passing: tuple[str, ...]
    misses: dict  # variant id -> list of GateMiss
    message: str

    @property
    def passed(self) -> bool:
        return self.best is not None

    def to_dict(self) -> dict:
        return {
            "gates": dict(self.gates),
            "passed": self.passed,
            "best": self.best,
            "passing": list(self.passing),
            "failures": {vid: [dict(gate=m.gate, limit=m.limit, value=m.value, shortfall=m.shortfall)
                               for m in ms] for vid, ms in self.misses.items() if ms},
            "message": self.message,
        }


def gate_values(variant: dict) -> dict:
    """The four gated figures of a report variant (None where not measured)."""
    return {
        "accuracy_drop_pp": variant.get("accuracy_drop_pp"),
        "speedup": variant.get("speedup_gate"),
        "size_kb": variant["size_bytes"] / 1024 if variant.get("size_bytes") is not None else None,
        "arena_kb": variant["arena_bytes"] / 1024 if variant.get("arena_bytes") is not None else None,
    }


def check(variant: dict, gates: dict, accuracy: str = "top1") -> list[GateMiss]:
    values = gate_values(variant)
    misses = []
    for gate, limit in gates.items():
        _, _, field, larger_better = GATES[gate]
        v = values[field]
        if v is None or (v < limit if larger_better else v > limit):
            misses.append(GateMiss(gate, float(limit), None if v is None else float(v), accuracy))
    return misses


def evaluate(variants: list[dict], gates: dict, accuracy: str = "top1") -> GateOutcome:
    """Apply `gates` ({name: limit}) to the report's variants (dicts with `id`, `top1`, latency...).

    `accuracy` is the report's data mode: ``top1`` (labelled test data) or ``agreement`` (unlabelled: `top1`
    holds top-1 agreement with the original float model).
    """
    unknown = set(gates) - set(GATES)
    if unknown:
        raise ValueError(f"Unknown gates {sorted(unknown)}; expected {sorted(GATES)}.")
    usable = [v for v in variants if v.get("error") is None]
    misses = {v["id"]: check(v, gates, accuracy) for v in usable}
    passing = [v for v in usable if not misses[v["id"]]]

    def speed(v):
        lat = v.get("host_median_us")
        return (lat if lat is not None else float("inf"), -(v.get("top1") or 0.0), v.get("size_bytes") or 0)

    if passing:
        best = min(passing, key=speed)
        n = len(passing)
        msg = (f"best variant: {best['id']} ({n} of {len(usable)} variants meet the gates)" if gates
               else f"best variant: {best['id']} (the fastest; no gates set)")
        return GateOutcome(dict(gates), best["id"], tuple(v["id"] for v in passing), misses, msg)
    if not usable:
        return GateOutcome(dict(gates), None, (), misses, "no variant could be measured")

    def closeness(v):
        ms = misses[v["id"]]
        rel = sum((m.shortfall / max(abs(m.limit), 1e-9)) if m.shortfall is not None else 1e9 for m in ms)
        return (len(ms), rel)

    near = min(usable, key=closeness)
    parts = "; ".join(m.describe() for m in misses[near["id"]])
    msg = f"no variant meets the gates; the closest, {near['id']}, misses {parts}"
    return GateOutcome(dict(gates), None, (), misses, msg)
