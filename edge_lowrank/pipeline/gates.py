"""Budget gates for build pipelines: pick the best variant that meets them, or say which gate failed by how much.

Why: a CI job wants one exit code and one line. "Best" is the fastest variant on the deployment target among
those that pass every gate; ties go to the higher top-1, then the smaller file. The target is `--select-on`:
the host (median latency) or an ARM profile under QEMU (instructions per inference), because on an x86 host
without VNNI float32 can beat int8 while an ARM dot-product core runs the int8 file with 3x fewer
instructions. The speed gate compares on the same figure. On an ARM profile only the variants counted there
are candidates (float32 is counted with `--arm-precisions int8,float32`). When none passes, the message names
the variant closest to passing (fewest failed gates, then smallest relative shortfall) and each gate it misses,
with the value reached and the shortfall. On unlabelled data ("agreement" mode) the accuracy gate applies to
top-1 agreement with the original float model, and its lines say so.
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
class Selection:
    """What picks the best variant: `on` (host or qemu:<profile>), the figure in words, and why this one."""

    on: str = "host"
    reason: str = "--select-on host"

    @property
    def profile(self) -> str | None:
        return self.on.split(":", 1)[1] if self.on.startswith("qemu:") else None

    @property
    def figure(self) -> str:
        return (f"{self.profile} instructions per inference (QEMU)" if self.profile
                else "host median latency (LiteRT + XNNPACK, 1 thread)")

    def value(self, variant: dict):
        """The variant's figure on this target, lower is faster; None where it was not measured."""
        if self.profile is None:
            return variant.get("host_median_us")
        return ((variant.get("arm") or {}).get(self.profile) or {}).get("instructions")

    def to_dict(self) -> dict:
        return {"on": self.on, "figure": self.figure, "reason": self.reason}


def resolve_selection(setting: str, arm_state: dict, variants: list[dict]) -> Selection:
    """`--select-on` (auto, host, qemu:<profile>) against what was measured.

    auto: the ARM profile (cortex-a76 when several) when at least one variant was counted on it, else host.
    """
    if setting == "host":
        return Selection("host", "--select-on host")
    if setting.startswith("qemu:"):
        return Selection(setting, f"--select-on {setting}")
    profiles = list(arm_state.get("profiles") or []) if arm_state.get("available") else []
    profiles.sort(key=lambda p: p != "cortex-a76")
    for p in profiles:
        if any(((v.get("arm") or {}).get(p) or {}).get("instructions") for v in variants):
            return Selection(f"qemu:{p}", f"default, --select-on auto: {p} was measured")
    why = arm_state.get("reason") or "no ARM count succeeded"
    return Selection("host", f"default, --select-on auto: no ARM profile measured ({why})")


@dataclasses.dataclass(frozen=True)
class GateMiss:
    gate: str
    limit: float
    value: float | None  # None: the figure could not be measured for this variant
    accuracy: str = "top1"  # top1 | agreement: what the accuracy gate's points are of
    on: str = "host"  # the speed gate's figure: host latency or qemu:<profile> instructions

    @property
    def shortfall(self) -> float | None:
        return None if self.value is None else abs(self.value - self.limit)

    def describe(self) -> str:
        flag, unit, _, _ = GATES[self.gate]
        of = ("; points of top-1 agreement with the original float model"
              if self.gate == "max_accuracy_drop" and self.accuracy == "agreement" else "")
        if self.value is None:
            return f"{flag} {self.limit:g} (not measured for it)"
        if self.gate == "min_speedup" and self.on != "host":
            of = f" in {self.on.split(':', 1)[1]} instructions"
        reach = "reaches" if GATES[self.gate][3] else "has"
        return f"{flag} {self.limit:g} by {self.shortfall:.3g} {unit} ({reach} {self.value:.3g} {unit}{of})"


@dataclasses.dataclass(frozen=True)
class GateOutcome:
    gates: dict
    best: str | None
    passing: tuple[str, ...]
    misses: dict  # variant id -> list of GateMiss
    message: str
    selection: Selection = Selection()
    not_measured: tuple[str, ...] = ()  # variants without a figure on the selection target: not candidates

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
            "select_on": self.selection.to_dict(),
            "not_measured": list(self.not_measured),
        }


def gate_values(variant: dict) -> dict:
    """The four gated figures of a report variant (None where not measured)."""
    return {
        "accuracy_drop_pp": variant.get("accuracy_drop_pp"),
        "speedup": variant.get("speedup_gate"),
        "size_kb": variant["size_bytes"] / 1024 if variant.get("size_bytes") is not None else None,
        "arena_kb": variant["arena_bytes"] / 1024 if variant.get("arena_bytes") is not None else None,
    }


def check(variant: dict, gates: dict, accuracy: str = "top1", on: str = "host") -> list[GateMiss]:
    values = gate_values(variant)
    misses = []
    for gate, limit in gates.items():
        _, _, field, larger_better = GATES[gate]
        v = values[field]
        if v is None or (v < limit if larger_better else v > limit):
            misses.append(GateMiss(gate, float(limit), None if v is None else float(v), accuracy, on))
    return misses


def speedup_on(selection: Selection, variant: dict, baseline: dict | None):
    """The speed gate's figure: the baseline's latency (or instruction count) over the variant's."""
    num, den = (None, None) if baseline is None else (selection.value(baseline), selection.value(variant))
    return None if num is None or not den else round(num / den, 4)


def evaluate(variants: list[dict], gates: dict, accuracy: str = "top1",
             selection: Selection | None = None) -> GateOutcome:
    """Apply `gates` ({name: limit}) to the report's variants (dicts with `id`, `top1`, latency...).

    `accuracy` is the report's data mode: ``top1`` (labelled test data) or ``agreement`` (unlabelled: `top1`
    holds top-1 agreement with the original float model). `selection` (default: host latency) is the figure
    that ranks the passing variants; the variants' `speedup_gate` must be on the same figure.
    """
    sel = selection or Selection()
    unknown = set(gates) - set(GATES)
    if unknown:
        raise ValueError(f"Unknown gates {sorted(unknown)}; expected {sorted(GATES)}.")
    usable = [v for v in variants if v.get("error") is None]
    unmeasured = ()
    if sel.profile is not None:  # an ARM count is no estimate: a variant not counted there is no candidate
        unmeasured = tuple(v["id"] for v in usable if sel.value(v) is None)
        usable = [v for v in usable if sel.value(v) is not None]
    misses = {v["id"]: check(v, gates, accuracy, sel.on) for v in usable}
    passing = [v for v in usable if not misses[v["id"]]]
    chosen = f"chosen on {sel.figure}"
    hint = "; --arm-precisions int8,float32 counts float32" if any(u.endswith("-float32") for u in unmeasured) else ""
    skipped = (f"; {len(unmeasured)} variant(s) not measured on {sel.on} were not candidates"
               f" ({', '.join(unmeasured[:4])}{', ...' if len(unmeasured) > 4 else ''}{hint})" if unmeasured else "")

    def speed(v):
        fig = sel.value(v)
        return (fig if fig is not None else float("inf"), -(v.get("top1") or 0.0), v.get("size_bytes") or 0)

    def outcome(best, msg):
        return GateOutcome(dict(gates), best, tuple(v["id"] for v in passing), misses, msg, sel, unmeasured)

    if passing:
        best = min(passing, key=speed)
        n = len(passing)
        return outcome(best["id"], f"best variant: {best['id']} ({n} of {len(usable)} variants meet the gates; "
                                   f"{chosen}{skipped})" if gates
                       else f"best variant: {best['id']} (the fastest; no gates set; {chosen}{skipped})")
    if not usable:
        return outcome(None, f"no variant could be measured on {sel.on}" if unmeasured
                       else "no variant could be measured")

    def closeness(v):
        ms = misses[v["id"]]
        rel = sum((m.shortfall / max(abs(m.limit), 1e-9)) if m.shortfall is not None else 1e9 for m in ms)
        return (len(ms), rel)

    near = min(usable, key=closeness)
    parts = "; ".join(m.describe() for m in misses[near["id"]])
    msg = f"no variant meets the gates; the closest, {near['id']}, misses {parts}{skipped}"
    return outcome(None, msg)
