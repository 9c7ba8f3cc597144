"""The benchmark's parameters and metrics, each declared once with its unit.

Every runner (host, QEMU, TFLM, ssh) fills in the same `BenchResult`; one renderer prints it. The loop
semantics and defaults follow TFLite's `benchmark_model` tool: warm-up for at least `warmup_runs` runs and
`warmup_min_secs`; then timed runs until at least `num_runs` runs and `min_secs` have passed, stopping at
`max_secs`. Only `invoke()` is timed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field

SCHEMA_VERSION = "1.0"


@dataclasses.dataclass
class BenchParams:
    num_runs: int = field(default=50, metadata={"help": "minimum number of timed runs"})
    min_secs: float = field(default=1.0, metadata={"help": "minimum duration of the timed runs (seconds)"})
    max_secs: float = field(default=150.0, metadata={"help": "maximum duration of the timed runs (seconds)"})
    warmup_runs: int = field(default=1, metadata={"help": "minimum number of warm-up runs"})
    warmup_min_secs: float = field(default=0.5, metadata={"help": "minimum duration of the warm-up (seconds)"})
    num_threads: int | None = field(default=1, metadata={"help": "interpreter threads (1 for stable latency)"})
    xnnpack: bool = field(default=True, metadata={"help": "use the XNNPACK delegate (LiteRT's default)"})
    timeout_s: float = field(default=600.0, metadata={"help": "kill a model's child process after this long (seconds)"})
    rounds: int = field(default=10, metadata={"help": "interleaved rounds (A B C A B C ...) when several models run"})


@dataclasses.dataclass
class Stats:
    """Summary of a list of timings in microseconds (population std, as TFLite's tool)."""

    count: int
    first: float
    min: float
    max: float
    mean: float
    std: float
    p5: float
    median: float
    p95: float


@dataclasses.dataclass
class BenchResult:
    """One model on one target. Missing figures are None (never 0), as TFLite's tool marks invalid memory."""

    model: str
    target: str  # "host", "qemu-aarch64:cortex-a76", "tflm", "ssh:pi4"
    model_size_mb: float
    emulated: bool = False
    init_us: float | None = None
    first_inference_us: float | None = None
    warmup_mean_us: float | None = None
    inference_us: Stats | None = None
    rss_after_init_mb: float | None = None
    peak_rss_mb: float | None = None
    delegate_partitions: int | None = None
    nodes_outside_delegate: int | None = None
    # ARM under QEMU: deterministic instruction counts.
    instructions_first: int | None = None
    instructions_per_inference: int | None = None
    # TFLM: smallest arena that works.
    arena_bytes: int | None = None
    accuracy: float | None = None
    confusion: list | None = None
    env: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    error: str | None = None
    # Raw timed-run latencies and per-round medians (microseconds): what speedup confidence intervals use.
    samples_us: list | None = None
    round_medians_us: list | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BenchResult":
        """Rebuild a BenchResult from `to_dict()` output (JSON from a worker, a board or a report)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        if isinstance(kwargs.get("inference_us"), dict):
            kwargs["inference_us"] = Stats(**kwargs["inference_us"])
        return cls(**kwargs)

    @property
    def label(self) -> str:
        """The model's name plus what distinguishes its variant (XNNPACK off, threads)."""
        p = self.params or {}
        tags = []
        if p.get("xnnpack") is False:
            tags.append("xnnpack off")
        if p.get("num_threads") not in (None, 1):
            tags.append(f"{p['num_threads']} threads")
        return self.model + (f" [{', '.join(tags)}]" if tags else "")
