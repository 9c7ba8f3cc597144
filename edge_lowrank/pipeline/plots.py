"""The report's two PNG figures, drawn with matplotlib's Agg backend from report.json alone (no display needed).

- `pareto.png`: top-1 against host latency, marker area proportional to the .tflite size, the Pareto front
  (variants no other variant beats on both latency and top-1) joined by a line. It answers "what do I trade".
- `layers.png`: per rewritten layer, MACs before and after each scheme, and the ranks each scheme chose.
"""

from __future__ import annotations

from pathlib import Path

from edge_lowrank.fileio import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points (latency, accuracy) not dominated by another, sorted by latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best_acc = [], float("-inf")
    for i in order:
        if points[i][1] > best_acc:
            front.append(i)
            best_acc = points[i][1]
    return front


def plot_pareto(report: dict, path) -> Path | None:
    """Write the accuracy-latency figure; None when no variant has both figures."""
    vs = [v for v in report["variants"] if v["host_median_us"] is not None and v["top1"] is not None]
    if not vs:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    sizes = [v["size_bytes"] / 1024 for v in vs]
    smax = max(sizes)
    colors = {"float32": "tab:blue", "int8": "tab:orange"}
    for prec, color in colors.items():
        sel = [i for i, v in enumerate(vs) if v["precision"] == prec]
        if sel:
            ax.scatter([vs[i]["host_median_us"] / 1000 for i in sel], [vs[i]["top1"] * 100 for i in sel],
                       s=[40 + 900 * sizes[i] / smax for i in sel], c=color, alpha=0.55, edgecolors="k",
                       label=prec)
    pts = [(v["host_median_us"] / 1000, v["top1"] * 100) for v in vs]
    front = pareto_front(pts)
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "k--", lw=1, label="Pareto front")
    best = (report.get("best") or {}).get("id")
    for v, (x, y) in zip(vs, pts):
        ax.annotate(v["id"] + (" *" if v["id"] == best else ""), (x, y), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    ax.set_xlabel("host median latency (ms, LiteRT + XNNPACK, 1 thread)")
    what = ("top-1 agreement with the float model (%)" if report["data"].get("mode") == "agreement"
            else "top-1 (%)")
    ax.set_ylabel(f"{what} on {report['data']['test']['spec']}")
    ax.set_title(f"Accuracy vs latency; marker area ~ .tflite size (largest {smax:.0f} KB)")
    ax.grid(alpha=0.3)
    legend = ax.legend(loc="lower right", fontsize=8)
    for handle in legend.legend_handles:
        if hasattr(handle, "set_sizes"):
            handle.set_sizes([40])
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def _rank_values(ranks) -> list[float]:
    if ranks is None:
        return []
    if isinstance(ranks, (int, float)):
        return [float(ranks)]
    if isinstance(ranks, dict):
        ranks = list(ranks.values())
    out = []
    for r in ranks:
        out += _rank_values(r)
    return out


def plot_layers(report: dict, path) -> Path | None:
    """Write the per-layer MACs and ranks figure; None when no scheme rewrote a layer."""
    per_scheme = {}
    for s in report["schemes"]:
        rows = ((s.get("rewrite") or {}).get("layers") or [])
        rows = [r for r in rows if r.get("macs_before")]
        if rows and s["status"] == "ok":
            per_scheme[s["scheme"]] = rows
    if not per_scheme:
        return None
    names = []
    for rows in per_scheme.values():
        for r in rows:
            if r["name"] not in names:
                names.append(r["name"])
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(8, 0.5 * len(names) + 3), 8), dpi=100, sharex=True)
    n = len(per_scheme)
    width = 0.8 / (n + 1)
    x = list(range(len(names)))
    before = {r["name"]: r["macs_before"] for rows in per_scheme.values() for r in rows}
    ax1.bar([i - 0.4 + width / 2 for i in x], [before.get(nm, 0) / 1e6 for nm in names], width,
            label="original", color="0.6")
    for k, (scheme, rows) in enumerate(per_scheme.items(), start=1):
        by = {r["name"]: r for r in rows}
        ax1.bar([i - 0.4 + width / 2 + k * width for i in x],
                [(by[nm].get("macs_after") or 0) / 1e6 if nm in by else 0 for nm in names], width, label=scheme)
        for i, nm in enumerate(names):
            vals = _rank_values(by[nm].get("ranks")) if nm in by and by[nm].get("action") == "factorized" else []
            if vals:
                ax2.scatter([i - 0.4 + width / 2 + k * width] * len(vals), vals, s=18, label=None,
                            color=f"C{k - 1}")
    ax1.set_ylabel("MACs per image (M)")
    ax1.set_title("Per-layer MACs before and after each scheme")
    ax1.legend(fontsize=7, ncol=min(4, n + 1))
    ax1.grid(axis="y", alpha=0.3)
    ax2.set_ylabel("rank(s) chosen")
    ax2.set_title("Ranks per layer (one dot per factor rank)")
    ax2.grid(alpha=0.3)
    ax2.set_xticks(x)
    ax2.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
