"""`edge-lowrank run [MODEL.keras]`: every scheme rewritten, fine-tuned, exported, benchmarked and reported.

Exit codes: 0 when a variant meets the gates (it is written as `best.tflite`), 3 when none does (one line
naming the gate and the shortfall), 1 for bad input, and 1 when native code (converter, TFLM, LiteRT) crashed
in a stage: that variant is marked failed, the others finish, the report is written, then one line names
each crashed stage, its file and the signal. See docs/pipeline.md.
"""

from __future__ import annotations

import sys


def add_arguments(parser):
    from edge_lowrank.pipeline.config import add_arguments as add

    add(parser)


def print_table(report: dict, stream=None) -> None:
    """The summary table on stdout (what `make demo` shows)."""
    from rich.console import Console
    from rich.table import Table

    from edge_lowrank.pipeline.report import data_sentence, selection_sentence, table_rows

    console = Console(file=stream or sys.stdout, width=250, highlight=False)
    head, rows = table_rows(report)
    table = Table(title=f"edge-lowrank run: {report['model']['path']}", title_justify="left")
    for i, h in enumerate(head):
        table.add_column(h, justify="left" if i < 2 else "right", no_wrap=True)
    for r in rows:
        table.add_row(*r)
    console.print(table)
    console.print(data_sentence(report), soft_wrap=True)
    for note in report["data"].get("notes") or []:
        console.print(f"data: {note}", soft_wrap=True)
    console.print(selection_sentence(report), soft_wrap=True)


def run(args) -> int:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from edge_lowrank.errors import GateError
    from edge_lowrank.pipeline.config import from_args
    from edge_lowrank.pipeline.stages import Pipeline

    from edge_lowrank import debuglog

    cfg = from_args(args)
    pipe = Pipeline(cfg)
    try:
        report = pipe.run()
    finally:
        debuglog.close()  # this run's debug.log ends with it
    outcome = report.pop("_outcome")
    print_table(report)
    print(f"report: {os.path.join(cfg.out, 'report.html')}")
    verdict = outcome.message + (f"; written to {os.path.join(cfg.out, 'best.tflite')}" if report["best"] else "")
    if pipe.crashes:  # the report is written and lists the others; a crash still fails the run, gates or not
        from edge_lowrank.isolate import CrashError

        print(verdict)
        raise CrashError(f"{len(pipe.crashes)} stage(s) crashed, the report lists the other variants: "
                         + "; ".join(pipe.crashes))
    if not outcome.passed:
        raise GateError(outcome.message)
    print(verdict)
    return 0
