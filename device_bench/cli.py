"""The bench command line, shared by `edge-lowrank bench` and `python -m device_bench` (board, no edge_lowrank).

Timing flags are generated from `BenchParams` field metadata, so names, defaults and help text are declared once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from .errors import BenchError
from .results import BenchParams

_RENAMED = {"num_threads": "threads", "timeout_s": "timeout"}
_SKIP = {"xnnpack"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="*", metavar="MODEL.tflite", help=".tflite files to benchmark")
    parser.add_argument("--baseline", help="model (path or file name) the others are compared against "
                                           "(default: the first); speedup with a 95%% confidence interval")
    parser.add_argument("--xnnpack", choices=("on", "off", "both"), default="on",
                        help="XNNPACK delegate on (AUTO), off (BUILTIN_WITHOUT_DEFAULT_DELEGATES) or both side by side")
    parser.add_argument("--target", default="host", help="host, tflm, ssh://user@host[:port] or qemu:<profile>")
    parser.add_argument("--data", help="labelled data for top-1 accuracy: fashion-mnist[:test|train|calib] or an .npz")
    parser.add_argument("--limit", type=int, help="use only the first N samples of --data")
    parser.add_argument("--inputs", help="an .npz whose first `x` sample is the timing input (default: random)")
    parser.add_argument("--no-interleave", action="store_true", help="time models one after the other")
    parser.add_argument("--json", metavar="OUT.json", help="write the results as JSON ('-' for stdout)")
    parser.add_argument("--csv", metavar="OUT.csv", help="write the results as CSV")
    parser.add_argument("--md", metavar="OUT.md", help="write the Markdown table to a file")
    parser.add_argument("--farm", metavar="TARGETS", help="a fleet: comma-separated targets (ssh:// boards, "
                        "qemu:<profile>, host); each file goes to the next free one, one job per target at a time, "
                        "one table (docs/device_bench.md)")
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="with --farm: drive the targets from here (local) or as Ray actors (ray)")
    parser.add_argument("--ray-address", help="with --executor ray: HOST:PORT of the cluster (default: a local Ray)")
    parser.add_argument("--remote-python", default="python3", help="the board's Python (ssh target)")
    parser.add_argument("--identity", help="private key for the ssh target (ssh -i)")
    group = parser.add_argument_group("timing (defaults of TFLite's benchmark tool)")
    for f in dataclasses.fields(BenchParams):
        if f.name in _SKIP:
            continue
        flag = "--" + _RENAMED.get(f.name, f.name).replace("_", "-")
        kind = int if f.name in ("num_runs", "warmup_runs", "num_threads", "rounds") else float
        group.add_argument(flag, dest=f.name, type=kind, default=f.default, metavar="N" if kind is int else "SECONDS",
                           help=f"{f.metadata.get('help', '')} (default: {f.default})")
    parser.add_argument("--job", help=argparse.SUPPRESS)  # a job file sent by the ssh target
    from .transform import add_arguments as add_transform_arguments

    add_transform_arguments(parser, " (default: what the .tflite files record in their metadata, else none)")


def _params_from_args(args) -> BenchParams:
    return BenchParams(**{f.name: getattr(args, f.name) for f in dataclasses.fields(BenchParams) if f.name not in _SKIP})


def _run_job(args):
    """The board's side of the ssh target: paths, per-model params and data come from a job file."""
    from .bench import bench_models

    with open(args.job, encoding="utf-8") as f:
        job = json.load(f)
    params = [BenchParams(**p) for p in job["params"]]
    return bench_models(job["paths"], params, target="host", data=job.get("data"), inputs=job.get("inputs"),
                        interleave=job.get("interleave", True))


def run(args) -> int:
    from . import report
    from .bench import bench_models, resolve_data
    from .compare import compare

    if args.job:
        results = _run_job(args)
    else:
        if not args.models:
            raise BenchError("No model to benchmark: give at least one .tflite file.")
        base = _params_from_args(args)
        modes = {"on": [True], "off": [False], "both": [True, False]}[args.xnnpack]
        if args.farm and args.target != "host":
            raise BenchError("--farm lists the targets; leave --target out.")
        if (args.executor != "local" or args.ray_address) and not args.farm:
            raise BenchError("--executor/--ray-address spread files over a --farm of targets; give --farm.")
        if args.ray_address and args.executor != "ray":
            raise BenchError("--ray-address needs --executor ray.")
        if args.target == "tflm" and args.xnnpack != "on":
            raise BenchError(f"--xnnpack {args.xnnpack} applies to LiteRT targets; TFLM has no XNNPACK.")
        paths, params = [], []
        for m in args.models:
            for x in modes:
                paths.append(m)
                params.append(dataclasses.replace(base, xnnpack=x))
        from .transform import for_tflite_files, from_args as stated_transform

        stated = stated_transform(args)  # bad flags fail before anything is loaded
        data = resolve_data(args.data)
        if data is not None and args.limit:
            data = data.take(args.limit)
        if data is not None:  # the one input transform, as `run` and `convert` applied it
            transform, note = for_tflite_files(stated, args.models)
            x = transform.apply(data.x)
            transform.check(x, f"Data {data.name}")
            data = data.with_x(x)
            if note:
                print(note, file=sys.stderr)
        if args.farm:
            from .farm import bench_farm, parse_fleet

            results = bench_farm(paths, params, parse_fleet(args.farm), executor=args.executor,
                                 ray_address=args.ray_address, data=data, inputs=args.inputs,
                                 remote_python=args.remote_python, ssh_identity=args.identity)
        else:
            results = bench_models(paths, params, target=args.target, data=data, inputs=args.inputs,
                                   interleave=not args.no_interleave, remote_python=args.remote_python,
                                   ssh_identity=args.identity)
        if data is not None:  # the JSON says how the images were fed
            for r in results:
                r.extra["input_transform"] = transform.describe()
    comparison = None
    timed = [r for r in results if r.inference_us is not None]
    if len(results) > 1 and timed:
        baseline = args.baseline if getattr(args, "baseline", None) else 0
        comparison = compare(results, baseline)
    if args.json:
        text = report.to_json(results, comparison)
        if args.json == "-":
            sys.stdout.write(text)
        else:
            report.write_text(args.json, text)
    if args.csv:
        report.write_text(args.csv, report.to_csv(results, comparison))
    md = report.to_markdown(results, comparison)
    if args.md:
        report.write_text(args.md, md)
    if args.json != "-":
        print(md, end="")
    failed = [r for r in results if r.error]
    if failed and not args.job:
        print(f"bench: {len(failed)} of {len(results)} model(s) failed; first: {failed[0].label}: {failed[0].error}",
              file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m device_bench",
                                     description="Benchmark .tflite files: latency, memory, accuracy (no TensorFlow).")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (BenchError, ValueError, OSError) as e:  # DataError is a ValueError; one line, no traceback
        print(f"device_bench: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("device_bench: interrupted", file=sys.stderr)
        return 130
