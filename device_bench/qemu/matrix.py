"""Comparison across models and CPU profiles: instructions per inference in one table.

Why a table of counts and not of times: under emulation the count is the deterministic figure; the ratio
between two models on one profile says how much work a rewrite saved with the kernels XNNPACK picks for that
core (dot product on A76, i8mm on A710, plain NEON on A53), and the ratio between profiles shows what an ISA
extension buys. Used by `python -m device_bench.qemu`.
"""

from __future__ import annotations

from pathlib import Path

from ..results import BenchParams, BenchResult
from .errors import QemuRunError


def run_matrix(models, profiles, params: BenchParams | None = None, data=None) -> list[BenchResult]:
    """Every model on every profile (profile-major). A model that fails gives an error row, not an exception.

    Raises:
        QemuSetupError: the QEMU target is not set up (nothing could run).
    """
    from .errors import QemuSetupError
    from .runner import run_qemu

    out = []
    for profile in profiles:
        for model in models:
            try:
                out.append(run_qemu(model, profile, params, data=data))
            except QemuSetupError:
                raise
            except QemuRunError as e:
                size = Path(model).stat().st_size / 1e6 if Path(model).is_file() else 0.0
                out.append(BenchResult(model=str(model), target=f"qemu-aarch64:{profile}", model_size_mb=size,
                                       emulated=True, error=str(e)))
    return out


def _m(n) -> str:
    return "-" if n is None else f"{n / 1e6:.3f}M"


def to_markdown(results: list[BenchResult], baseline: str | None = None) -> str:
    """Models as rows, profiles as columns: steady instructions per inference, and the ratio to the baseline
    model (default: the first) on the same profile; a second table gives the instruction mix."""
    profiles = list(dict.fromkeys(r.target.split(":", 1)[1] for r in results))
    models = list(dict.fromkeys(r.model for r in results))
    cell = {(r.model, r.target.split(":", 1)[1]): r for r in results}
    base = next((m for m in models if baseline and (m == baseline or Path(m).name == baseline)), models[0])
    lines = ["| model | " + " | ".join(f"{p} instr/inf (x base)" for p in profiles) + " |",
             "|---|" + "---|" * len(profiles)]
    for m in models:
        cells = []
        for p in profiles:
            r, b = cell.get((m, p)), cell.get((base, p))
            if r is None or r.error:
                cells.append("error" if r is not None else "-")
                continue
            ratio = (f" ({r.instructions_per_inference / b.instructions_per_inference:.2f}x)"
                     if b is not None and not b.error and b.instructions_per_inference else "")
            cells.append(_m(r.instructions_per_inference) + ratio)
        lines.append(f"| `{Path(m).name}` | " + " | ".join(cells) + " |")
    lines += ["", "| model | profile | first | steady | NEON/FP | NEON ld/st | dot | i8mm | SVE | vs host |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        p = r.target.split(":", 1)[1]
        if r.error:
            lines.append(f"| `{Path(r.model).name}` | {p} | error: {r.error} |  |  |  |  |  |  |  |")
            continue
        mix, agree = r.extra["instruction_mix"], r.extra["host_agreement"]
        vs = "bit-exact" if agree["bit_exact"] else (
            f"max diff {agree['max_abs_diff']:.2g}" + ("" if agree["within_tolerance"] else " (OUT OF TOLERANCE)"))
        lines.append(f"| `{Path(r.model).name}` | {p} | {_m(r.instructions_first)} | {_m(mix['total'])} | "
                     f"{_m(mix['simd_fp'])} | {_m(mix['simd_ldst'])} | {_m(mix['dot'])} | {_m(mix['i8mm'])} | "
                     f"{_m(mix['sve'])} | {vs} |")
    lines += ["", "Instruction counts from QEMU user mode (deterministic); they capture the instruction count and "
                  "mix, not caches, issue width or clock speed. Emulated times are not device figures."]
    return "\n".join(lines) + "\n"
