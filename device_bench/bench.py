"""`bench_models`: the one entry point that sends models to a target (host, tflm, ssh://, qemu:<profile>).

The pipeline, the CLI and a board all call this; each target returns the same BenchResult rows, with an error
row (never an exception) for a model that fails, so one bad file cannot sink a comparison.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from .datasets import Dataset, load_dataset
from .errors import BenchError
from .results import BenchParams, BenchResult

TARGETS_HELP = "host, tflm, ssh://user@host[:port] or qemu:<profile>[,<profile>...]"


def _params_list(paths, params) -> list[BenchParams]:
    if params is None:
        return [BenchParams() for _ in paths]
    if isinstance(params, BenchParams):
        return [dataclasses.replace(params) for _ in paths]
    params = list(params)
    if len(params) != len(paths) or not all(isinstance(p, BenchParams) for p in params):
        raise BenchError(f"Invalid value for argument `params`. Expected a BenchParams or one per model "
                         f"({len(paths)}). Received: {len(params)} values.")
    return params


def validate_params(p: BenchParams) -> None:
    """One clear line for a nonsensical parameter, naming it and echoing the value."""
    for name in ("num_runs", "warmup_runs", "rounds"):
        v = getattr(p, name)
        if not isinstance(v, int) or v < (1 if name == "rounds" else 0):
            raise BenchError(f"Invalid value for `{name}`. Expected a non-negative int"
                             f"{' >= 1' if name == 'rounds' else ''}. Received: {name}={v!r}.")
    for name in ("min_secs", "max_secs", "warmup_min_secs"):
        v = getattr(p, name)
        if not isinstance(v, (int, float)) or v < 0:
            raise BenchError(f"Invalid value for `{name}`. Expected seconds >= 0. Received: {name}={v!r}.")
    if not isinstance(p.timeout_s, (int, float)) or p.timeout_s <= 0:
        raise BenchError(f"Invalid value for `timeout_s`. Expected seconds > 0. Received: timeout_s={p.timeout_s!r}.")
    if p.num_threads is not None and (not isinstance(p.num_threads, int) or p.num_threads < 1):
        raise BenchError(f"Invalid value for `num_threads`. Expected an int >= 1 or None. "
                         f"Received: num_threads={p.num_threads!r}.")


def resolve_data(data) -> Dataset | None:
    """A Dataset from a Dataset or its spelling (`fashion-mnist:test`, `file.npz`); labels are required."""
    if data is None:
        return None
    if not isinstance(data, Dataset):
        data = load_dataset(str(data), default_split="test")
    if data.y is None:
        raise BenchError(f"Data `{data.name}` has no labels (array `y`): accuracy needs them.")
    return data


def bench_models(paths: Sequence, params: BenchParams | Sequence[BenchParams] | None = None, *,
                 target: str = "host", data=None, interleave: bool = True, inputs: str | None = None,
                 remote_python: str = "python3", ssh_identity: str | None = None) -> list[BenchResult]:
    """Benchmark .tflite files on a target, one BenchResult per file (error rows for files that fail).

    Args:
        paths: the .tflite files (the same file may appear twice with different params).
        params: one BenchParams for all, or one per path (e.g. XNNPACK on and off side by side).
        target: "host" (child process per model, interleaved rounds), "tflm" (microcontroller interpreter),
            "ssh://user@host[:port]" (a Linux board), or "qemu:<profile>" (aarch64 under QEMU).
        data: a labelled Dataset or its spelling; adds top-1 accuracy and a confusion matrix.
        interleave: time the models in rounds A B C A B C (host only).
        inputs: an .npz whose first `x` sample is the timing input (random inputs otherwise).
        remote_python, ssh_identity: the board's Python and the private key (ssh target only).
    Returns:
        A list of BenchResult, in the order of `paths`.
    Raises:
        BenchError: an unknown target, bad parameters or data (bad MODELS give error rows instead).
    """
    paths = [str(p) for p in paths]
    if not paths:
        raise BenchError("No model to benchmark: give at least one .tflite file.")
    params_list = _params_list(paths, params)
    for p in params_list:
        validate_params(p)
    dataset = resolve_data(data)
    if inputs is not None and not os.path.isfile(inputs):
        raise BenchError(f"Inputs file {inputs} does not exist.")
    target = str(target)
    if target == "host":
        from .host import run_host

        return run_host(paths, params_list, data=dataset, inputs_npz=inputs, interleave=interleave)
    if target == "tflm":
        from .host import run_tflm

        return run_tflm(paths, params_list, data=dataset)
    if target.startswith("ssh://"):
        from .ssh import run_ssh

        return run_ssh(paths, params_list, target, data=dataset, inputs=inputs, interleave=interleave,
                       remote_python=remote_python, identity=ssh_identity)
    if target.startswith("qemu:"):
        return _run_qemu(paths, params_list, target.split(":", 1)[1], dataset)
    raise BenchError(f"Invalid target `{target}`. Expected {TARGETS_HELP}.")


def _run_qemu(paths, params_list, profiles: str, data) -> list[BenchResult]:
    """Every model on every profile of `qemu:a53,a76` (profile-major), so one run compares both axes."""
    try:
        from . import qemu
    except ImportError as e:
        raise BenchError(f"The qemu target is not available in this installation ({e}).") from None
    names = [p.strip() for p in profiles.split(",") if p.strip()]
    # short names: `a76` is `cortex-a76`
    names = [n if n in qemu.PROFILES or f"cortex-{n}" not in qemu.PROFILES else f"cortex-{n}" for n in names]
    for profile in names or [profiles]:
        if profile not in qemu.PROFILES:
            raise BenchError(f"Invalid QEMU profile `{profile}`. Expected one of {sorted(qemu.PROFILES)}.")
    ok, reason = qemu.available()
    if not ok:
        raise BenchError(f"The qemu target is not available: {reason}")
    from .host import error_result

    out = []
    for profile in names:
        for path, params in zip(paths, params_list):
            try:
                out.append(qemu.run_qemu(path, profile, params, data=data))
            except Exception as e:  # a model failing under emulation is an error row like on the host
                out.append(error_result(path, params, " ".join(str(e).split())[:300] or type(e).__name__,
                                        target=f"qemu:{profile}"))
    return out
