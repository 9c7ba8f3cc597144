"""`edge-lowrank compress MODEL.keras --scheme S (--rank N | --rank-fraction F | --energy E | --vbmf |
--target-mac-ratio R | --target-param-ratio R) [-o OUT.keras] [--json FILE] [--finetune-epochs N ...] [--qat]`.

Prints the per-layer table (ranks, parameters and MACs before/after, relative error, kept layers and why),
writes the rewritten model atomically, optionally distils it from the original first. With --qat it also
writes OUT-int8-qat.tflite: the rewritten model fine-tuned with quantization-aware training (tfmot, in a
child process) by distillation from the original model, converted to int8. Every result is computed before
the first file is written.
"""

from __future__ import annotations

from pathlib import Path

from edge_lowrank.auto.candidates import AUTO_SCHEMES
from edge_lowrank.finetune.augment import AUGMENTS
from edge_lowrank.finetune.distill import DEFAULT_LR, SCHEDULES

SCHEMES = ("spatial", "channel", "tucker2", "weight-svd", "output", "output-channels", "cp", "tucker2-spatial", "auto")


def add_arguments(parser):
    parser.add_argument("model", help="a .keras (or .h5) model file")
    parser.add_argument("--scheme", required=True, choices=SCHEMES,
                        help="the low-rank scheme; auto: a scheme and rank per layer on measured cost")
    rule = parser.add_mutually_exclusive_group()
    rule.add_argument("--rank", type=int, help="the same rank for every layer (capped at each layer's full rank)")
    rule.add_argument("--rank-fraction", type=float, help="a fraction of each layer's full rank, in (0, 1]")
    rule.add_argument("--energy", type=float, help="share of squared singular values kept, in (0, 1] "
                                                   "(the default, 0.9, when no rule is given)")
    rule.add_argument("--vbmf", action="store_true", help="ranks from analytic empirical VBMF")
    rule.add_argument("--target-mac-ratio", type=float, help="global budget: model MACs <= R x original")
    rule.add_argument("--target-param-ratio", type=float, help="global budget: parameters <= R x original")
    rule.add_argument("--target-latency-ratio", type=float,
                      help="auto: measured cost <= R x original (default of auto: 0.5)")
    parser.add_argument("--cost-target", default="host",
                        help="auto: what to measure: host (int8 latency), qemu:a76 (ARM instructions) or macs")
    parser.add_argument("--auto-schemes", default=",".join(AUTO_SCHEMES),
                        help="auto: the schemes it may choose from")
    parser.add_argument("--auto-objective", default=None, choices=("task", "shift", "kernel"),
                        help="auto with --calib-data: task (per layer the scheme the data favour, cut spread by "
                             "kernel error; default with --finetune-epochs), shift (least output shift; default "
                             "without fine-tuning) or kernel (kernel error alone, as without data)")
    parser.add_argument("--layer-rank", action="append", default=[], metavar="NAME=R[xR2...]",
                        help="explicit ranks for one layer, overriding the rule (repeatable), e.g. conv2=16x32")
    parser.add_argument("--rank-multiple", type=int, default=8,
                        help="round ranks up to a multiple of this (default 8; 1 turns rounding off)")
    parser.add_argument("--no-fold-batchnorm", action="store_true", help="keep BatchNormalization layers")
    parser.add_argument("--layers", default=None, help="comma-separated layer names to consider (default: all)")
    parser.add_argument("--calib-data", default=None,
                        help="inputs for the output and output-channels schemes: fashion-mnist[:calib|train|test] or an .npz")
    parser.add_argument("--calib-samples", type=int, default=512, help="calibration images used (default 512)")
    from edge_lowrank.rewrite.output_fit import DEFAULT as OUTPUT_FIT_DEFAULT, FITS

    parser.add_argument("--output-fit", default=None, choices=FITS,
                        help="scheme output: linear (PCA of each layer's responses), nonlinear (fit after the ReLU "
                             "that follows a layer), *-asymmetric (layer by layer, on the inputs the compressed "
                             "layers before it give); default: " + OUTPUT_FIT_DEFAULT)
    parser.add_argument("--cp-time-budget", type=float, default=30.0,
                        help="seconds of ALS per layer for cp (default 30)")
    parser.add_argument("--finetune-epochs", type=int, default=0, help="epochs of distillation (default 0)")
    parser.add_argument("--finetune-data", default="fashion-mnist:train",
                        help="training data for distillation; without labels it distils on the original's "
                             "outputs alone (default fashion-mnist:train)")
    parser.add_argument("--finetune-samples", type=int, default=None, help="training images used (default all)")
    parser.add_argument("--val-data", default=None, help="labelled data to score top-1 before/after fine-tuning")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--finetune-lr", type=float, default=DEFAULT_LR,
                        help=f"peak learning rate, Adam (default {DEFAULT_LR:g})")
    parser.add_argument("--finetune-schedule", default="auto", choices=SCHEDULES,
                        help="auto (constant for one epoch, else cosine to 5 %%), constant, cosine, warmup-cosine")
    parser.add_argument("--finetune-augment", default="none", choices=AUGMENTS,
                        help="a fresh random view of the fine-tuning images per epoch (horizontal flip, shift up "
                             "to 2 px): only where the labels survive it (default none)")
    parser.add_argument("--qat", action="store_true",
                        help="also write OUT-int8-qat.tflite next to -o: the rewritten model after quantization-"
                             "aware fine-tuning (tensorflow-model-optimization, in a child process), distilled "
                             "from the original model on --finetune-data, converted to int8 (calibrated on "
                             "--calib-data, default fashion-mnist:calib)")
    parser.add_argument("--qat-samples", type=int, default=10000, help="QAT training images (default 10000)")
    parser.add_argument("--qat-epochs", type=int, default=3, help="QAT epochs (default 3)")
    parser.add_argument("--qat-lr", type=float, default=1e-5, help="QAT learning rate, Adam (default 1e-5)")
    parser.add_argument("-o", "--output", default=None, help="where to write the rewritten .keras model")
    parser.add_argument("--json", default=None, help="also write the report as JSON to this file")
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-layer progress lines")
    from device_bench.transform import add_arguments as add_transform_arguments

    add_transform_arguments(parser, " (default: 0..255 pixels for a model starting with Rescaling(1/255), "
                                    "else images as they are)")


def run(args) -> int:
    import json
    import warnings

    from edge_lowrank.errors import ModelError
    from edge_lowrank.fileio import atomic_path, atomic_write_text
    from edge_lowrank.modelio import load_keras_model

    out = Path(args.output) if args.output else None
    if out is not None and out.suffix != ".keras":
        raise ModelError(f"Invalid value for -o/--output. Expected a path ending in .keras. Received: {out}.")
    if args.finetune_epochs < 0:
        raise ModelError(f"Invalid value for --finetune-epochs. Expected an int >= 0. "
                         f"Received: {args.finetune_epochs}.")
    qat_out = _qat_path(args, out)
    from device_bench.transform import from_args as stated_transform, resolve

    stated = stated_transform(args)
    model = load_keras_model(args.model)
    from edge_lowrank.data import load_dataset

    transform, transform_note = resolve(stated, model)  # the same map for calibration, fine-tuning and top-1
    if transform_note and not args.quiet:
        print(f"input transform: {transform.describe()}; {transform_note}")

    def model_inputs(ds, what):
        x = transform.apply(ds.x)
        transform.check(x, f"Data {ds.name} ({what})")
        return ds.with_x(x)
    from edge_lowrank.rewrite import CompressionPolicy, compress

    calib = None
    if args.calib_data:
        calib = model_inputs(load_dataset(args.calib_data, default_split="calib").take(args.calib_samples),
                             "calibration").x
    layer_ranks = {}
    for item in args.layer_rank:
        name, _, value = item.partition("=")
        try:
            layer_ranks[name.strip()] = tuple(int(v) for v in value.lower().split("x"))
        except ValueError:
            raise ModelError(f"Invalid value for --layer-rank. Expected NAME=R or NAME=R1xR2. Received: {item!r}.") \
                from None
        if not name.strip():
            raise ModelError(f"Invalid value for --layer-rank. Expected NAME=R or NAME=R1xR2. Received: {item!r}.")
    if args.output_fit is not None and args.scheme != "output":
        raise ModelError(f"--output-fit applies to --scheme output only. Received: --scheme {args.scheme}.")
    train = None
    if args.finetune_epochs > 0:  # loaded first: auto judges its whole choices by a short distillation on it
        train = model_inputs(load_dataset(args.finetune_data, default_split="train").take(args.finetune_samples),
                             "fine-tuning")
    policy = CompressionPolicy(
        scheme=args.scheme, rank=args.rank, rank_fraction=args.rank_fraction, energy=args.energy,
        vbmf=args.vbmf, target_mac_ratio=args.target_mac_ratio, target_param_ratio=args.target_param_ratio,
        rank_multiple=args.rank_multiple, fold_batchnorm=not args.no_fold_batchnorm, calib_data=calib,
        layers=tuple(s.strip() for s in args.layers.split(",")) if args.layers else None,
        cp_time_budget_s=args.cp_time_budget, layer_ranks=layer_ranks or None,
        **({"output_fit": args.output_fit} if args.output_fit else {}),
        **({"target_latency_ratio": args.target_latency_ratio, "cost_target": args.cost_target,
            "auto_objective": args.auto_objective or ("task" if args.finetune_epochs else "shift"),
            "auto_schemes": tuple(s.strip() for s in args.auto_schemes.split(",") if s.strip()),
            "trial_data": train if calib is not None else None}
           if args.scheme == "auto" else
           {"target_latency_ratio": args.target_latency_ratio} if args.target_latency_ratio is not None else {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the report says the same, per layer
        new_model, report = compress(model, policy, verbose=not args.quiet)
    print(report.render())
    if not report.changed:
        reasons = sorted({d.reason for d in report.layers if d.reason})
        raise ModelError(f"No layer of {args.model} was rewritten with {args.scheme}"
                         + (f": {'; '.join(reasons)[:300]}" if reasons else " (no Conv2D or Dense layer)")
                         + ". Nothing written.")
    data = report.to_dict()
    if args.finetune_epochs > 0:
        from edge_lowrank.finetune import distill

        val = model_inputs(load_dataset(args.val_data, default_split="test"), "validation") if args.val_data else None
        hist = distill(new_model, model, train, epochs=args.finetune_epochs, batch_size=args.batch_size,
                       val=val, verbose=not args.quiet, augment=args.finetune_augment,
                       learning_rate=args.finetune_lr, schedule=args.finetune_schedule)
        data["finetune"] = hist
        if val is not None:
            print(f"top-1 on {val.name}: original {hist['teacher_val_top1'] * 100:.2f}%, rewritten "
                  f"{hist['val_top1_before'] * 100:.2f}% before fine-tuning, {hist['val_top1_after'] * 100:.2f}% after")
    qat_flat = None
    if qat_out is not None:
        qat_flat, data["qat"] = _qat(args, model, new_model, calib, model_inputs, transform, qat_out)
    if out is not None:
        with atomic_path(out, suffix=".keras") as tmp:
            new_model.save(tmp)
        print(f"wrote {out}")
    if qat_flat is not None:
        from edge_lowrank.fileio import atomic_write_bytes

        atomic_write_bytes(qat_out, qat_flat)
        print(f"wrote {qat_out}")
    if args.json:
        atomic_write_text(args.json, json.dumps(data, indent=2))
        print(f"wrote {args.json}")
    return 0


def _qat_path(args, out: Path | None) -> Path | None:
    """Where --qat writes its int8 file (next to the .keras), after checking its options; None without --qat."""
    from edge_lowrank.errors import ModelError

    if not args.qat:
        return None
    if out is None:
        raise ModelError("--qat needs -o/--output: the int8 .tflite is written next to the .keras file.")
    for name in ("qat_samples", "qat_epochs"):
        if getattr(args, name) < 1:
            raise ModelError(f"Invalid value for `--{name.replace('_', '-')}`. Expected a positive int. "
                             f"Received: {getattr(args, name)}.")
    if not args.qat_lr > 0:
        raise ModelError(f"Invalid value for `--qat-lr`. Expected a positive number. Received: {args.qat_lr}.")
    return out.with_name(out.stem + "-int8-qat.tflite")


def _qat(args, model, new_model, calib, model_inputs, transform, path: Path):
    """The rewritten model after QAT as int8 bytes, and its report entry.

    The teacher is the original model: QAT then also recovers what the rewrite lost, not only what int8 loses.
    """
    from converters.metadata import normalization_metadata
    from converters.qat import qat_tflite
    from edge_lowrank.data import load_dataset

    train = model_inputs(load_dataset(args.finetune_data, default_split="train").take(args.qat_samples), "QAT")
    if calib is None:
        calib = model_inputs(load_dataset("fashion-mnist:calib").take(args.calib_samples), "calibration").x
    teacher = model.predict(train.x, batch_size=256, verbose=0)
    if not args.quiet:
        print(f"QAT: {args.qat_epochs} epoch(s) on {len(train):,} images of {train.name}, distilled from the "
              "original model (tensorflow-model-optimization, in a child process)")
    flat = qat_tflite(new_model, train.x, teacher, calib_x=calib, epochs=args.qat_epochs, lr=args.qat_lr,
                      metadata={"scheme": args.scheme, "source_model": Path(args.model).name,
                                **normalization_metadata(transform)},
                      input_range=transform.model_range)
    entry = {"tflite": str(path), "size_bytes": len(flat), "epochs": args.qat_epochs,
             "train_samples": len(train), "lr": args.qat_lr, "fidelity_vs_original": None}
    if args.val_data:
        from converters.fidelity import check_fidelity

        val = model_inputs(load_dataset(args.val_data, default_split="test"), "validation")
        # Against the original: QAT fine-tunes the rewritten weights towards it, so the rewritten Keras model
        # is no longer the reference.
        fid = check_fidelity(model, flat, val, n=None, subject=path.name)
        entry["fidelity_vs_original"] = fid.to_dict()
        print(f"int8 QAT file vs the original Keras model, {fid.render()}")
    return flat, entry
