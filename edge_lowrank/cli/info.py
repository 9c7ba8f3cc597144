"""`edge-lowrank info MODEL.keras [--data DATA]`: parameters, MACs, file size and top-1 accuracy."""

from __future__ import annotations

import json
from pathlib import Path


def add_arguments(parser):
    parser.add_argument("model", help="a .keras model file")
    parser.add_argument("--data", default=None,
                        help="labelled data to score top-1 on: fashion-mnist[:test|train|calib] or an .npz")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    from device_bench.transform import add_arguments as add_transform_arguments

    add_transform_arguments(parser)


def evaluate_accuracy(model, dataset, batch_size: int = 256) -> float:
    """Top-1 accuracy of a Keras model on a labelled `Dataset`."""
    import numpy as np

    from edge_lowrank.errors import DataError

    if dataset.y is None:
        raise DataError(f"Data {dataset.name} has no labels `y`: accuracy needs them.")
    want = tuple(model.inputs[0].shape[1:])
    if tuple(dataset.x.shape[1:]) != want:
        raise DataError(f"Data {dataset.name} has images of shape {dataset.x.shape[1:]}, "
                        f"the model wants {want}.")
    preds = model.predict(dataset.x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(preds, axis=-1) == dataset.y))


def run(args) -> int:
    from edge_lowrank.data import load_dataset
    from edge_lowrank.modelio import load_keras_model
    from edge_lowrank.profile import profile_model

    from device_bench.transform import from_args as stated_transform, resolve

    stated = stated_transform(args)
    model = load_keras_model(args.model)
    prof = profile_model(model)
    info = {
        "model": str(args.model),
        "file_size_kb": round(Path(args.model).stat().st_size / 1024, 1),
        "params": prof.params,
        "macs": prof.macs,
        "input_shape": list(model.inputs[0].shape[1:]),
    }
    if prof.variable_shape:  # unknown spatial sizes count as 1: MACs per unit of that size, not per image
        info["macs_note"] = "input size unknown (None): MACs counted with each unknown dimension as 1"
    if args.data:
        ds = load_dataset(args.data, default_split="test")
        transform, note = resolve(stated, model)
        x = transform.apply(ds.x)
        transform.check(x, f"Data {ds.name}")
        ds = ds.with_x(x)
        info["data"] = ds.name
        info["input_transform"] = transform.describe() + (f"; {note}" if note else "")
        info["top1"] = round(evaluate_accuracy(model, ds), 4)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"{info['model']}: {info['params']:,} parameters, {info['macs'] / 1e6:.1f} M MACs per image, "
              f"{info['file_size_kb']:.0f} KB file, input {tuple(info['input_shape'])}")
        if "macs_note" in info:
            print(f"note: {info['macs_note']}")
        if "top1" in info:
            print(f"top-1 on {info['data']} ({len(ds):,} images): {info['top1'] * 100:.2f}% "
                  f"(input transform: {info['input_transform']})")
    return 0
