"""`RewriteReport`: one decision per layer (factorized, kept with a reason, BatchNorm folded) and totals."""

from __future__ import annotations

import dataclasses
import json


@dataclasses.dataclass(frozen=True)
class LayerDecision:
    name: str
    class_name: str
    scheme: str
    action: str  # "factorized", "kept" or "folded"
    reason: str | None
    ranks: tuple[int, ...] | None
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    rel_error: float | None
    kept_energy: float | None = None
    response_error: float | None = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["ranks"] = list(self.ranks) if self.ranks is not None else None
        return d


@dataclasses.dataclass(frozen=True)
class RewriteReport:
    """What `compress` did. Totals are the whole model's, counted by `edge_lowrank.profile` on both models."""

    scheme: str
    rule: str
    layers: tuple[LayerDecision, ...]
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    seconds: float = 0.0
    auto: dict | None = None  # scheme "auto": the budget, measured costs and the choice per layer
    notes: tuple[str, ...] = ()  # e.g. why a MAC or parameter budget was not met, or landed well under it

    @property
    def changed(self) -> bool:
        return any(d.action == "factorized" for d in self.layers)

    def to_dict(self) -> dict:
        return {"scheme": self.scheme, "rule": self.rule, "changed": self.changed,
                "params_before": self.params_before, "params_after": self.params_after,
                "macs_before": self.macs_before, "macs_after": self.macs_after,
                "param_ratio": self.params_after / self.params_before if self.params_before else 1.0,
                "mac_ratio": self.macs_after / self.macs_before if self.macs_before else 1.0,
                "seconds": round(self.seconds, 3), "layers": [d.to_dict() for d in self.layers],
                "notes": list(self.notes),
                **({"auto": self.auto} if self.auto is not None else {})}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def render(self) -> str:
        """A plain-text table (fixed width, no colour) followed by the totals."""
        head = ("layer", "type", "action", "ranks", "params before", "params after", "MACs before",
                "MACs after", "rel. error", "reason")
        rows = []
        for d in self.layers:
            ranks = "x".join(map(str, d.ranks)) if d.ranks else "-"
            if self.scheme == "auto" and d.ranks:
                ranks = f"{d.scheme} {ranks}"
            rows.append((d.name, d.class_name, d.action, ranks,
                         f"{d.params_before:,}", f"{d.params_after:,}", f"{d.macs_before:,}",
                         f"{d.macs_after:,}", "-" if d.rel_error is None else f"{d.rel_error:.4f}",
                         d.reason or ""))
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        right = {4, 5, 6, 7, 8}

        def fmt(r):
            return "  ".join(str(x).rjust(w) if i in right else str(x).ljust(w)
                             for i, (x, w) in enumerate(zip(r, widths))).rstrip()

        lines = [f"scheme {self.scheme}, {self.rule}", fmt(head), fmt(["-" * w for w in widths])]
        lines += [fmt(r) for r in rows]
        n_fact = sum(d.action == "factorized" for d in self.layers)
        n_kept = sum(d.action == "kept" for d in self.layers)
        pr = self.params_after / self.params_before if self.params_before else 1.0
        mr = self.macs_after / self.macs_before if self.macs_before else 1.0
        lines.append(f"model: {self.params_before:,} -> {self.params_after:,} parameters ({pr:.3f}x), "
                     f"{self.macs_before:,} -> {self.macs_after:,} MACs per image ({mr:.3f}x); "
                     f"{n_fact} layers factorized, {n_kept} kept")
        lines += [f"note: {n}" for n in self.notes]
        if self.auto is not None:
            a, unit = self.auto, self.auto["unit"]
            if a.get("original_cost"):
                lines.append(f"{a['budget_rule']}; predicted cost {a['predicted_cost']:,.1f} of "
                             f"{a['original_cost']:,.1f} {unit} ({a['predicted_cost'] / a['original_cost']:.3f}x)"
                             f"{'' if a['budget_met'] else ', budget NOT met'}")
            if a.get("objective"):
                lines.append(f"auto objective: {a['objective']}")
            if a.get("thinning"):
                lines.append(f"auto: {a['thinning']}")
        return "\n".join(lines)


def finish_report(scheme, policy, decisions, model, new_model, seconds, notes=(), auto=None, stacklevel=3):
    """The `RewriteReport` of a finished rewrite, counted on both models; its notes and an unchanged model
    are raised as warnings (one line each) where the caller of `compress` sees them.

    `notes` is a list of lines, or a function of the two models' profiles (before, after) that returns them.
    """
    import warnings

    from edge_lowrank.profile import profile_model

    before, after = profile_model(model), profile_model(new_model)
    notes = tuple(notes(before, after) if callable(notes) else notes)
    report = RewriteReport(scheme, policy.describe(), tuple(decisions), before.params, after.params, before.macs,
                           after.macs, seconds, auto=auto, notes=notes)
    for n in notes:
        warnings.warn(f"compress: {n}", stacklevel=stacklevel)
    if not report.changed:
        warnings.warn(f"compress: no layer was rewritten with {scheme} ({policy.describe()}); "
                      f"the report says why for each layer.", stacklevel=stacklevel)
    return report
