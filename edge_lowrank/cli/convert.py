"""`edge-lowrank convert MODEL.keras --mode MODE -o OUT.tflite [--c-array OUT.cc]`.

Converts, audits (ops, XNNPACK partitions, quantization), checks fidelity against Keras on held-out data,
optionally writes a C array checked on TFLite Micro, and prints the summary. Every result is computed
before the first file is written, and each file is written atomically: a failure leaves no output. The
converter, LiteRT and TFLM run in child processes: a native crash is one line naming the stage, the file
and the signal (exit 1), never a bare "Segmentation fault".
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

MODES = ("float32", "float16", "dynamic", "int8")


def add_arguments(parser):
    parser.add_argument("model", help="a .keras (or .h5) model file, original or rewritten by edge-lowrank")
    parser.add_argument("--mode", choices=MODES, default="float32", help="TFLite precision (default float32)")
    parser.add_argument("-o", "--output", required=True, help="the .tflite file to write")
    parser.add_argument("--calib-data", default="fashion-mnist:calib",
                        help="int8 calibration images: fashion-mnist[:calib|train|test] or an .npz "
                             "(default fashion-mnist:calib)")
    parser.add_argument("--calib-samples", type=int, default=200,
                        help="number of calibration images (default 200)")
    parser.add_argument("--float-io", action="store_true",
                        help="int8 only: keep float32 inputs and outputs instead of int8")
    parser.add_argument("--no-equalize", action="store_true",
                        help="int8 only: skip equalizing the channel ranges between chained low-rank factors "
                             "on the calibration data (on by default; the float model is unchanged by it)")
    parser.add_argument("--eval-data", default=None,
                        help="held-out data for the fidelity check (default fashion-mnist:test when the input "
                             "is 28x28x1; 'none' to skip)")
    parser.add_argument("--eval-samples", type=int, default=1000, help="fidelity samples (default 1000)")
    parser.add_argument("--c-array", default=None, metavar="OUT.cc",
                        help="also write the model as a C++ array (OUT.cc and OUT.h) and check it on TFLM")
    parser.add_argument("--array-name", default=None, help="C name of the array (default g_<output stem>)")
    parser.add_argument("--metadata-json", default=None,
                        help="a JSON file whose object is stored in the model's metadata (scheme, ranks, ...)")
    parser.add_argument("--allow-custom-ops", action="store_true",
                        help="accept custom and Select-TF (Flex) ops instead of failing")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    from device_bench.transform import add_arguments as add_transform_arguments

    add_transform_arguments(parser, " (calibration data outside the model's range are refused; default: 0,1, "
                                    "or 0..255 pixels for a model starting with Rescaling(1/255))")
    _add_quant_arguments(parser)


def _add_quant_arguments(parser):
    """int8 remedies: quantization-aware fine-tuning (tfmot, in a child) and the quantization debugger."""
    parser.add_argument("--qat", action="store_true",
                        help="int8 only: quantization-aware fine-tuning (tensorflow-model-optimization, in a "
                             "child process) by distillation from the float model, instead of plain PTQ")
    parser.add_argument("--qat-data", default="fashion-mnist:train",
                        help="QAT training images (default fashion-mnist:train)")
    parser.add_argument("--qat-samples", type=int, default=10000, help="QAT training images (default 10000)")
    parser.add_argument("--qat-epochs", type=int, default=3, help="QAT epochs (default 3)")
    parser.add_argument("--qat-lr", type=float, default=1e-5, help="QAT learning rate, Adam (default 1e-5)")
    parser.add_argument("--qat-label-weight", type=float, default=0.0,
                        help="share of the label loss in QAT, the rest distils the float model (default 0: "
                             "pure distillation)")
    parser.add_argument("--debug", action="store_true",
                        help="int8 only: per-op int8 error on the calibration data (TFLite's "
                             "QuantizationDebugger), the worst ops named")
    parser.add_argument("--float-fallback", type=int, default=0, metavar="N",
                        help="int8 only: keep the N ops with the largest int8 error in float (implies --debug) "
                             "and report the host latency cost")


def _user_metadata(path) -> dict:
    from edge_lowrank.errors import DataError

    if path is None:
        return {}
    p = Path(path)
    try:
        value = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"Cannot read metadata JSON {p}: {type(e).__name__}.") from None
    if not isinstance(value, dict):
        raise DataError(f"Metadata JSON {p} must hold an object, not {type(value).__name__}.")
    return value


def _array_name(args, c_path: Path) -> str:
    if args.array_name:
        return args.array_name
    stem = re.sub(r"[^A-Za-z0-9_]", "_", Path(args.output).stem)
    return f"g_{stem}"


def run(args) -> int:
    import numpy as np

    from converters.audit import audit_ops, require_builtin_only
    from converters.calibration import calibration_samples
    from converters.carray import c_array
    from converters.convert import to_tflite_isolated
    from converters.fidelity import check_fidelity
    from converters.metadata import read_metadata
    from converters.tflm import TflmError, tflm_check
    from edge_lowrank.data import load_dataset
    from edge_lowrank.errors import DataError
    from edge_lowrank.fileio import atomic_write_bytes, atomic_write_text
    from edge_lowrank.modelio import load_keras_model

    out = Path(args.output)
    if out.suffix.lower() != ".tflite":
        raise DataError(f"Invalid value for `-o`. Expected a path ending in .tflite. Received: {out}.")
    c_path = Path(args.c_array) if args.c_array else None
    if c_path is not None and c_path.suffix.lower() not in (".cc", ".cpp", ".c"):
        raise DataError(f"Invalid value for `--c-array`. Expected a .cc, .cpp or .c path. Received: {c_path}.")
    from device_bench.transform import from_args as stated_transform, resolve
    from converters.metadata import normalization_metadata

    stated = stated_transform(args)
    metadata = _user_metadata(args.metadata_json)

    model = load_keras_model(args.model)
    input_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    transform, transform_note = resolve(stated, model)  # one input transform for calibration and fidelity
    input_range = transform.model_range
    for key, value in normalization_metadata(transform).items():
        metadata.setdefault(key, value)
    calib = None
    if args.mode == "int8":
        calib_ds = load_dataset(args.calib_data, default_split="calib")
        calib = transform.apply(calibration_samples(calib_ds, args.calib_samples))
        metadata.setdefault("calibration_data", calib_ds.name)
    metadata.setdefault("source_model", Path(args.model).name)
    metadata.setdefault("source_sha256", hashlib.sha256(Path(args.model).read_bytes()).hexdigest())

    quant = _check_quant_options(args)
    if args.qat:
        flat = _qat_flat(args, model, calib, transform, metadata, input_range)
    else:
        flat = to_tflite_isolated(model, subject=str(args.model), precision=args.mode, representative_data=calib,
                                  float_io=args.float_io, metadata=metadata, input_range=input_range,
                                  allow_select_tf_ops=args.allow_custom_ops, equalize=not args.no_equalize)
    if quant:
        quant = _debug(args, calib, metadata, input_range)
        if quant["fallback"] is not None:
            flat = quant["fallback"]
    audit = audit_ops(flat, subject=str(out))
    require_builtin_only(audit, allow_custom=args.allow_custom_ops)

    fidelity, note = None, None
    eval_spec = args.eval_data
    if eval_spec is None:
        eval_spec = "fashion-mnist:test" if input_shape == (28, 28, 1) else "none"
        if eval_spec == "none":
            note = f"fidelity not checked: input {input_shape} is not Fashion-MNIST's; pass --eval-data"
    if eval_spec.lower() != "none":
        eval_ds = load_dataset(eval_spec, default_split="test")
        fidelity = check_fidelity(model, flat, eval_ds.with_x(transform.apply(eval_ds.x)),
                                  n=args.eval_samples, subject=str(out))

    remedy = None
    if args.mode == "int8" and fidelity is not None:
        from converters.quant_debug import remedies

        remedy = remedies(fidelity.top1_agreement, quant["report"] if quant else None,
                          calib_samples=len(calib), qat=args.qat)

    tflm, sources = None, None
    if c_path is not None:
        try:
            tflm = tflm_check(flat, subject=str(out))
        except TflmError as e:
            raise TflmError(f"{e} (for microcontrollers convert with --mode int8)") from None
        name = _array_name(args, c_path)
        h_path = c_path.with_suffix(".h")
        sources = c_array(flat, name, arena_size=tflm.arena_size, header_name=h_path.name)

    atomic_write_bytes(out, flat)
    if sources is not None:
        atomic_write_text(c_path.with_suffix(".h"), sources[1])
        atomic_write_text(c_path, sources[0])

    summary = {
        "output": str(out),
        "mode": args.mode,
        "size_bytes": len(flat),
        "audit": audit.to_dict(),
        "fidelity": fidelity.to_dict() if fidelity else None,
        "tflm": tflm.to_dict() if tflm else None,
        "c_array": [str(c_path), str(c_path.with_suffix(".h"))] if c_path else None,
        "metadata": read_metadata(flat),
        "quant_debug": _quant_summary(quant),
        "remedy": remedy,
    }
    if args.json:
        summary["audit"].pop("weights")
        print(json.dumps(summary, indent=2, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)))
        return 0
    print(f"{args.model} -> {out} ({args.mode}, {len(flat) / 1024:.1f} KB)")
    print(f"input transform: {transform.describe()}" + (f"; {transform_note}" if transform_note else ""))
    print(audit.render())
    if audit.unexplained_undelegated:
        print("warning: nodes outside XNNPACK that are not documented exceptions: "
              + ", ".join(audit.unexplained_undelegated))
    if quant:
        print(quant["report"].render())
        if quant["kept"]:
            lat = quant["latency"]
            print(f"kept in float: {', '.join(k.layer for k in quant['kept'])}; host latency "
                  f"{lat['fallback_ms']:.3f} ms vs {lat['int8_ms']:.3f} ms all-int8 ({lat['ratio']:.2f}x, "
                  "interleaved, 1 thread)")
    if fidelity:
        print(fidelity.render())
    elif note:
        print(note)
    if remedy:
        print(remedy)
    if tflm:
        print(tflm.render())
        print(f"wrote {c_path} and {c_path.with_suffix('.h')}")
    return 0


def _check_quant_options(args) -> bool:
    """Validate --qat/--debug/--float-fallback; True when the debugger runs."""
    from edge_lowrank.errors import DataError

    if args.float_fallback < 0:
        raise DataError(f"Invalid value for `--float-fallback`. Expected an int >= 0. Received: {args.float_fallback}.")
    debug = args.debug or args.float_fallback > 0
    for flag, on in (("--qat", args.qat), ("--debug", args.debug), ("--float-fallback", args.float_fallback > 0)):
        if on and args.mode != "int8":
            raise DataError(f"{flag} needs --mode int8 (received --mode {args.mode}).")
    if args.qat and args.float_fallback:
        raise DataError("--qat and --float-fallback are two different remedies: use one at a time.")
    for name in ("qat_samples", "qat_epochs"):
        if getattr(args, name) < 1:
            raise DataError(f"Invalid value for `--{name.replace('_', '-')}`. Expected a positive int. "
                            f"Received: {getattr(args, name)}.")
    return debug


def _qat_flat(args, model, calib, transform, metadata, input_range) -> bytes:
    """QAT bytes: fine-tuned on --qat-data against the model's own outputs (tfmot in a child process)."""
    from converters.qat import qat_tflite
    from edge_lowrank.data import load_dataset

    train = load_dataset(args.qat_data, default_split="train").take(args.qat_samples)
    return qat_tflite(model, transform.apply(train.x), calib_x=calib, labels=train.y, epochs=args.qat_epochs,
                      lr=args.qat_lr, label_weight=args.qat_label_weight,
                      float_io=args.float_io, equalize=not args.no_equalize, metadata=metadata,
                      input_range=input_range)


def _debug(args, calib, metadata, input_range) -> dict:
    """The quantization debugger (and the float fallback) in a child process, like the converter."""
    from converters.quant_debug import debug_file
    from edge_lowrank.isolate import run_isolated

    return run_isolated(debug_file, str(args.model), calib, float_fallback=args.float_fallback,
                        float_io=args.float_io, equalize=not args.no_equalize, input_range=input_range,
                        metadata=metadata, stage="quantization debugger", subject=str(args.model))


def _quant_summary(quant) -> dict | None:
    if not quant:
        return None
    return {"report": quant["report"].to_dict(), "kept_in_float": [k.layer for k in quant["kept"]],
            "latency": quant["latency"]}
