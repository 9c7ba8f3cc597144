"""Seeded training of the sample models on Fashion-MNIST, on CPU.

Usage::

    python -m sample_models.train resnet_fmnist [--epochs N] [--batch-size B] [--seed S] [--out DIR]
    python -m sample_models.train vgg_fmnist

It trains on the 60,000 training images (random horizontal flips and random shifts of a few pixels,
redrawn every epoch), with AdamW and a linear warm-up followed by cosine decay to zero, then writes
``DIR/NAME.keras`` (atomically, without optimizer state) and its card ``DIR/NAME.json``. The card's
accuracy is measured on all 10,000 test images with the saved file reloaded, as a user would load it.

Training is seeded (`keras.utils.set_random_seed`: Python, NumPy and TensorFlow) and does not need a GPU.
The same seed on the same machine and software gives the same run; bitwise-identical weights across
machines, CPU instruction sets or library versions are not promised (thread scheduling and kernels differ),
so a rerun elsewhere lands near the card's accuracy, not exactly on it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402

from sample_models import QUANT_MODELS, SAMPLE_MODELS  # noqa: E402

DESCRIPTIONS = {
    "resnet_fmnist": (
        "ResNet-style CNN for 28x28x1 Fashion-MNIST: 3x3 stem conv (32 ch, 28x28), two stride-2 stages of "
        "basic residual blocks (64 ch at 14x14, 128 ch at 7x7; 3x3 convs, BatchNorm, residual Add, 1x1 "
        "projection shortcuts), global average pooling, Dense softmax head."
    ),
    "vgg_fmnist": (
        "VGG-style CNN for 28x28x1 Fashion-MNIST: 3x3 conv-BN-ReLU stacks (32 ch at 28x28, 2x64 ch at 14x14, "
        "128 ch at 7x7) with max-pooling, Flatten (6,272 features), Dense 512 ReLU + dropout 0.5, "
        "Dense softmax head."
    ),
    "seqbn_fmnist": (
        "Legacy-style Sequential CNN for 28x28x1 Fashion-MNIST in the Conv -> ReLU -> BatchNorm order: conv 32 "
        "(3x3, ReLU, BN), max-pool, conv 64 (3x3, ReLU, BN), max-pool, Flatten (3,136 features), Dense 1024 "
        "ReLU, Dense 512 ReLU, Dense softmax head. Kept for quantization studies (PTQ vs QAT)."
    ),
}

# Hyper-parameters the committed models were trained with (the card records them too).
DEFAULTS = {
    "resnet_fmnist": {"epochs": 8, "batch_size": 128, "lr": 2e-3, "weight_decay": 5e-3, "seed": 1234,
                      "max_shift": 2},
    "vgg_fmnist": {"epochs": 5, "batch_size": 128, "lr": 1e-3, "weight_decay": 5e-3, "seed": 1234,
                   "max_shift": 0},
    "seqbn_fmnist": {"epochs": 2, "batch_size": 128, "lr": 1e-3, "weight_decay": 5e-3, "seed": 1234,
                     "max_shift": 0},
}
MAX_SHIFT = 2


def augment(x: np.ndarray, rng: np.random.Generator, max_shift: int = MAX_SHIFT) -> np.ndarray:
    """Random horizontal flip (p=0.5) and random shift of up to `max_shift` pixels (zero padding) per image."""
    from edge_lowrank.finetune.augment import augment_images

    return augment_images(x, rng, flip=True, max_shift=max_shift)


def evaluate_accuracy(model, dataset, batch_size: int = 500) -> float:
    """Top-1 accuracy (fraction) of `model` on every image of `dataset`."""
    probs = model.predict(dataset.x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(probs, axis=-1) == dataset.y))


def train(name: str, *, epochs: int, batch_size: int, lr: float, weight_decay: float, seed: int,
          out_dir: Path, command: str, max_shift: int = MAX_SHIFT, train_images: int | None = None,
          init: Path | None = None) -> dict:
    import keras
    import tensorflow as tf

    from device_bench.datasets import load_fashion_mnist
    from edge_lowrank.fileio import atomic_path, atomic_write_text
    from edge_lowrank.modelio import load_keras_model
    from edge_lowrank.profile import profile_model
    from sample_models.architectures import BUILDERS, INPUT_SHAPE

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    train_set = load_fashion_mnist("train").take(train_images)
    test_set = load_fashion_mnist("test")

    model = BUILDERS[name]()
    previous = None  # the card of the model we continue from, if any
    if init is not None:
        model.set_weights(load_keras_model(init).get_weights())
        init_card = Path(init).with_suffix(".json")
        previous = json.loads(init_card.read_text()) if init_card.is_file() else None
        print(f"continuing from {init}", flush=True)
    steps_per_epoch = -(-len(train_set) // batch_size)
    total = steps_per_epoch * epochs
    warmup = steps_per_epoch // 2
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=lr / 10, decay_steps=total - warmup, alpha=0.0, warmup_target=lr,
        warmup_steps=warmup)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    print(f"{name}: {model.count_params():,} parameters, {epochs} epochs x {steps_per_epoch} steps, "
          f"batch {batch_size}, peak lr {lr}, seed {seed}", flush=True)

    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        hist = model.fit(augment(train_set.x, rng, max_shift), train_set.y, batch_size=batch_size, epochs=1,
                         shuffle=True, verbose=0)
        print(f"epoch {epoch}/{epochs}: loss {hist.history['loss'][-1]:.4f} "
              f"train acc {hist.history['accuracy'][-1]:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    train_seconds = time.perf_counter() - start

    # Save the weights in a fresh, uncompiled model: no optimizer state in the committed file.
    clean = BUILDERS[name]()
    clean.set_weights(model.get_weights())
    model_path = out_dir / f"{name}.keras"
    with atomic_path(model_path) as tmp:
        clean.save(tmp)
    reloaded = load_keras_model(model_path)
    accuracy = evaluate_accuracy(reloaded, test_set)
    card = {
        "name": name,
        "description": DESCRIPTIONS[name],
        "dataset": f"fashion-mnist (train: {len(train_set):,} images; test: {len(test_set):,} images)",
        "test_accuracy": round(accuracy, 4),
        "test_images": len(test_set),
        "params": int(reloaded.count_params()),
        "macs": int(profile_model(reloaded).macs),
        "input_shape": list(INPUT_SHAPE),
        "output": "softmax probabilities over 10 classes",
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "optimizer": f"AdamW(weight_decay={weight_decay}), warm-up 0.5 epoch to lr {lr}, cosine decay to 0",
        "augmentation": ("random horizontal flip, random shift up to {max_shift} px" if max_shift
                         else "random horizontal flip only").format(max_shift=max_shift),
        "train_seconds": round(train_seconds, 1),
        "train_hardware": f"{os.cpu_count()} CPU cores ({platform.machine()}), no GPU",
        "command": command,
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
    }
    if init is not None:
        card["stages"] = [*(previous or {}).get("stages", [_stage(previous)] if previous else []),
                          _stage(card)]
        if previous:
            card["epochs"] = previous["epochs"] + epochs
            card["train_seconds"] = round(previous["train_seconds"] + train_seconds, 1)
            card["command"] = f"{previous['command']} && {command}"
            card["optimizer"] = "; then ".join(st["optimizer"] for st in card["stages"])
            card["augmentation"] = "; then ".join(st["augmentation"] for st in card["stages"])
    atomic_write_text(out_dir / f"{name}.json", json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2), flush=True)
    return card


def _stage(card: dict) -> dict:
    """One training run of a card, for models trained in several runs (`--init`)."""
    keys = ("epochs", "optimizer", "augmentation", "train_seconds", "command")
    return {key: card[key] for key in keys}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sample_models.train", description=__doc__.split("\n")[0])
    parser.add_argument("name", choices=SAMPLE_MODELS + QUANT_MODELS)
    parser.add_argument("--epochs", type=int, help="training epochs (default: the committed model's)")
    parser.add_argument("--batch-size", type=int, help="images per step (default: the committed model's)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: the committed model's)")
    parser.add_argument("--seed", type=int, help="seed of every RNG (default: the committed model's)")
    parser.add_argument("--max-shift", type=int,
                        help="largest random shift in pixels, 0 for flips only (default: the committed model's)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="folder for NAME.keras and NAME.json (default: the sample_models package)")
    parser.add_argument("--init", type=Path,
                        help="start from the weights of this .keras file (same architecture) instead of "
                             "random ones; its card, if next to it, is extended")
    parser.add_argument("--train-images", type=int,
                        help="train on the first N training images only (smoke tests; default: all 60,000)")
    args = parser.parse_args(argv)
    hp = dict(DEFAULTS[args.name])
    for key in ("epochs", "batch_size", "lr", "seed", "max_shift"):
        if getattr(args, key) is not None:
            hp[key] = getattr(args, key)
    if hp["epochs"] < 1:
        parser.error(f"Invalid value for argument `--epochs`. Expected a positive int. Received: {hp['epochs']}.")
    command = (f"python -m sample_models.train {args.name} --epochs {hp['epochs']} "
               f"--batch-size {hp['batch_size']} --lr {hp['lr']} --seed {hp['seed']} --max-shift {hp['max_shift']}")
    if args.train_images is not None:
        command += f" --train-images {args.train_images}"
    if args.init is not None:
        command += f" --init {args.init}"
    train(args.name, out_dir=args.out, command=command, train_images=args.train_images, init=args.init, **hp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
