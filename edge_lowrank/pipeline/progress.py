"""One progress display across all stages of a run, with a time estimate that learns as the run goes.

Why not rich's own ETA: cached stages finish instantly and would make its speed estimate wildly optimistic.
Each stage has a weight (a rough cost in "units"); the estimate is the remaining units times the seconds per
unit measured on the stages that actually ran (before any ran, a prior). Every stage also prints one log line
(`ran`, `cached`, `failed`), which is what a CI log and the resume test read.
"""

from __future__ import annotations

import sys
import time

PRIOR_SECONDS_PER_UNIT = 4.0


def _fmt_secs(s: float) -> str:
    s = int(round(s))
    return f"{s // 60}:{s % 60:02d}" if s < 3600 else f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class StageProgress:
    """Plan the stages with weights, then report each one as it starts and ends."""

    def __init__(self, enabled: bool = True, stream=None):
        from rich.console import Console

        self.console = Console(file=stream or sys.stderr, highlight=False, soft_wrap=True)
        self.enabled = enabled and self.console.is_terminal
        self.weights: dict[str, float] = {}
        self.done: set[str] = set()
        self.ran_units = 0.0
        self.ran_secs = 0.0
        self.t0 = time.monotonic()
        self._progress = None
        self._task = None

    def plan(self, stages: dict[str, float]) -> None:
        """Add stages (name -> weight) to the plan; can be called again as later stages become known."""
        self.weights.update(stages)
        if self._progress is not None:
            self._progress.update(self._task, total=sum(self.weights.values()))

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[n]}"),
                                      TimeElapsedColumn(), TextColumn("eta {task.fields[eta]}"),
                                      console=self.console, transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task("starting", total=sum(self.weights.values()) or 1, n="",
                                                 eta=self.eta_text())
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def remaining_seconds(self) -> float:
        rate = self.ran_secs / self.ran_units if self.ran_units > 0 else PRIOR_SECONDS_PER_UNIT
        return sum(w for n, w in self.weights.items() if n not in self.done) * rate

    def eta_text(self) -> str:
        return _fmt_secs(self.remaining_seconds())

    def _refresh(self, description: str) -> None:
        if self._progress is not None:
            completed = sum(self.weights.get(n, 0) for n in self.done)
            self._progress.update(self._task, description=description, completed=completed,
                                  n=f"{len(self.done)}/{len(self.weights)}", eta=self.eta_text())

    def log(self, text: str) -> None:
        self.console.print(text)

    def start(self, name: str) -> float:
        self._refresh(f"[bold]{name}[/bold]")
        return time.monotonic()

    def finish(self, name: str, started: float, *, cached: bool, failed: str | None = None) -> None:
        secs = time.monotonic() - started
        self.done.add(name)
        if not cached and failed is None:
            self.ran_units += self.weights.get(name, 1.0)
            self.ran_secs += secs
        n = f"[{len(self.done)}/{len(self.weights)}]"
        if failed is not None:
            self.log(f"{n} stage {name}: failed ({failed})")
        elif cached:
            self.log(f"{n} stage {name}: cached (skipped)")
        else:
            self.log(f"{n} stage {name}: ran in {secs:.1f} s, about {self.eta_text()} left")
        self._refresh(name)
