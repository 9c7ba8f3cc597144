"""Knowledge distillation: fine-tune a compressed model (student) towards the original (teacher).

Loss = alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) (Hinton et
al. 2015). The sample models end in a softmax, so logits are taken as log(probabilities) (a softmax of
log p / T is p^(1/T) renormalised, the same tempered distribution). Teacher outputs are computed once, then the
student trains with Keras `fit` (its progress bar shows the progress). Unlabelled data (no `y`) train on the
teacher's outputs alone (alpha = 0): distillation needs no labels.

References:
    Hinton, Vinyals, Dean 2015, "Distilling the Knowledge in a Neural Network".
"""

from __future__ import annotations

import numpy as np

from edge_lowrank.errors import DataError, EdgeLowrankError

_EPS = 1e-7


class DistillError(EdgeLowrankError, ValueError):
    """Distillation settings out of range."""


def _is_probabilities(p: np.ndarray) -> bool:
    return bool(np.all(p >= -1e-6) and np.allclose(p.sum(axis=-1), 1.0, atol=1e-3))


def _check(student, teacher, data, what: str, labels: bool = False):
    if data is None:
        return
    if data.y is None and labels:
        raise DataError(f"{what} data {data.name} has no labels `y`: top-1 needs them.")
    want = tuple(student.inputs[0].shape[1:])
    if tuple(data.x.shape[1:]) != want:
        raise DataError(f"{what} data {data.name} has images of shape {data.x.shape[1:]}, the model wants {want}.")
    n_out = int(teacher.outputs[0].shape[-1])
    if data.y is not None and (data.y.min() < 0 or data.y.max() >= n_out):
        raise DataError(f"{what} data {data.name} has labels outside [0, {n_out}).")


def _leaves(model):
    import keras

    for lyr in model.layers:
        if isinstance(lyr, keras.Model):
            yield from _leaves(lyr)
        else:
            yield lyr


def reseed(model, seed: int) -> int:
    """Set every random layer's seed state (Dropout, GaussianNoise, ...) from `seed` and the layer's name.

    Why: such a layer draws its seed when it is built, from the global stream at that moment, so two rewrites
    that build the same function (`auto` returning channel's model, say) would train with different dropout
    masks and part by the noise of one fine-tune (0.3-0.7 points on the sample VGG in 1 epoch). Keyed by the
    seed and the layer's name, the same model fine-tunes to the same weights whatever built it, and models
    that differ see the same masks where they share a layer: their comparison is of the models, not the draw.
    Returns the number of seed states set."""
    import zlib

    n = 0
    for lyr in _leaves(model):
        for k, gen in enumerate(getattr(lyr, "_seed_generators", ())):
            value = zlib.crc32(f"{seed}:{lyr.name}:{k}".encode()) % (2**31 - 1) + 1
            gen.state.assign(np.array([value, 0], dtype=gen.state.dtype))
            n += 1
    return n


def top1(model, data, batch_size: int = 256) -> float:
    pred = model.predict(data.x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(pred, axis=-1) == data.y))


SCHEDULES = ("auto", "constant", "cosine", "warmup-cosine")
DEFAULT_LR = 5e-4  # measured best for the 1-epoch fine-tune run does by default (docs/schemes.md "Fine-tuning")
RECIPE = "kd+reestimate-affine+reseed/3"  # changes when a default above changes what a fine-tune produces (stage keys)


def distill(student, teacher, train, *, epochs: int = 1, batch_size: int = 128, temperature: float = 4.0,
            alpha: float = 0.5, val=None, verbose: bool = True, learning_rate: float = DEFAULT_LR,
            seed: int = 0, schedule: str = "auto", reestimate: str = "affine", reestimate_samples: int = 1024,
            freeze_bn: bool = True, augment: str = "none", teacher_out=None) -> dict:
    """Fine-tune `student` in place on `train` (a `Dataset`) with soft targets from `teacher`.

    Args:
        student: the compressed model (trained in place). teacher: the original (left as it is).
        train: `edge_lowrank.data.Dataset`; without labels the loss is the distillation term alone.
        val: a labelled `Dataset` scoring top-1 before and after.
        epochs, batch_size, learning_rate: the Adam run. temperature, alpha: the loss above.
        schedule: the learning rate over the run: constant, cosine (decay to 5 %), warmup-cosine (linear
            warm-up over the first 10 % of the steps, then cosine), or auto (constant for one epoch, else
            cosine).
        reestimate: before training, match each rewritten block's per-channel output statistics to the
            teacher's on the first `reestimate_samples` training images (`recalibrate`: affine, mean, none).
            Affine (mean and spread, "BN re-estimation") is the default: on the sample ResNet, spatial at a
            third of the MACs, 1 epoch on 5,000 images, it lifted float top-1 from 90.67 % to 91.04 % (mean of
            3 seeds; docs/schemes.md "Fine-tuning"), for about 2 % of the epoch's time.
        freeze_bn: keep the BatchNormalization layers left in the student in inference mode.
        augment: a fresh random view of `train` per epoch (`augment.AUGMENTS`: none, flip, shift, flip+shift),
            the teacher's outputs recomputed on it; for runs of several epochs, on data whose labels survive
            the transform.
        seed: the data order, augmentation and every random layer's masks (`reseed`): the same student and
            seed give the same weights.
        verbose: Keras' progress bar per epoch.
        teacher_out: the teacher's outputs on `train.x` when the caller has them (`auto`'s trials distil
            several students on the same images); without augmentation only.

    Returns:
        {"loss": [...per epoch], "epochs", "samples", "temperature", "alpha" (0 without labels), "labels"
        (whether `train` had them), and with `val`: "val_top1_before", "val_top1_after", "teacher_val_top1"}.

    Raises:
        DataError: images of the wrong shape, labels out of range, `val` without labels.
    """
    import keras
    from keras import ops

    from edge_lowrank.finetune.augment import AUGMENTS, augmenter
    from edge_lowrank.finetune.recalibrate import MODES, recalibrate

    if epochs < 0 or batch_size < 1 or temperature <= 0 or not 0.0 <= alpha <= 1.0 or learning_rate <= 0:
        raise DistillError(f"Invalid distillation settings: epochs={epochs} (>= 0), batch_size={batch_size} (>= 1), "
                           f"temperature={temperature} (> 0), alpha={alpha} (in [0, 1]), "
                           f"learning_rate={learning_rate} (> 0).")
    if schedule not in SCHEDULES or reestimate not in MODES or augment not in AUGMENTS:
        raise DistillError(f"Invalid distillation settings: schedule={schedule!r} (one of {', '.join(SCHEDULES)}), "
                           f"reestimate={reestimate!r} (one of {', '.join(MODES)}), "
                           f"augment={augment!r} (one of {', '.join(AUGMENTS)}).")
    _check(student, teacher, train, "Training")
    _check(student, teacher, val, "Validation", labels=True)
    labelled = train.y is not None
    if not labelled:
        alpha = 0.0  # the teacher's outputs are the only target
    keras.utils.set_random_seed(seed)
    reseed(student, seed)  # the same model fine-tunes the same way, whichever rewrite built it
    view = augmenter(augment)
    rng = np.random.default_rng(seed)
    x0 = train.x if view is None else view(train.x, rng)  # the first epoch's images: the data or a first view
    if teacher_out is not None and (view is not None or len(teacher_out) != len(train)):
        raise DistillError(f"Invalid value for `teacher_out`: the teacher's outputs on the {len(train)} training "
                           f"images, without augmentation. Received {len(teacher_out)} rows, augment={augment!r}.")
    t_out = teacher.predict(x0, batch_size=max(batch_size, 256), verbose=0) if teacher_out is None \
        else np.asarray(teacher_out)
    probs = _is_probabilities(t_out)
    n_cls = t_out.shape[-1]
    onehot = np.eye(n_cls, dtype=np.float32)[train.y] if labelled else np.zeros((len(train), n_cls), np.float32)

    def soft_targets(x, t_out=None):  # [one-hot labels | teacher logits] on images x, what the loss below reads
        if t_out is None:
            t_out = teacher.predict(x, batch_size=max(batch_size, 256), verbose=0)
        t_logits = np.log(np.clip(t_out, _EPS, 1.0)) if probs else t_out
        return np.concatenate([onehot, t_logits.astype(np.float32)], axis=-1)

    targets = soft_targets(x0, t_out)
    T = float(temperature)

    def loss(y_true, y_pred):
        onehot, zt = y_true[:, :n_cls], y_true[:, n_cls:]
        zs = ops.log(ops.clip(y_pred, _EPS, 1.0)) if probs else y_pred
        ce = -ops.sum(onehot * ops.log_softmax(zs, axis=-1), axis=-1)
        pt = ops.softmax(zt / T, axis=-1)
        kl = ops.sum(pt * (ops.log_softmax(zt / T, axis=-1) - ops.log_softmax(zs / T, axis=-1)), axis=-1)
        return alpha * ce + (1.0 - alpha) * T * T * kl

    out = {"epochs": epochs, "samples": len(train), "temperature": T, "alpha": alpha, "labels": labelled,
           "learning_rate": learning_rate, "schedule": schedule, "reestimate": reestimate,
           "freeze_bn": freeze_bn, "augment": augment, "loss": []}
    if val is not None:
        out["teacher_val_top1"] = top1(teacher, val)
        out["val_top1_before"] = top1(student, val)
    if epochs > 0 and reestimate != "none":
        out["reestimated"] = recalibrate(student, teacher, train.x[:reestimate_samples], mode=reestimate)
    if epochs > 0:
        # BatchNorm in inference mode (frozen statistics) by default: a short fine-tune on a few thousand images
        # should not re-estimate the statistics the rest of the network was trained with.
        frozen = [lyr for lyr in _leaves(student) if isinstance(lyr, keras.layers.BatchNormalization)
                  and lyr.trainable] if freeze_bn else []
        for lyr in frozen:
            lyr.trainable = False
        # auto: one epoch keeps the rate (decaying within a short touch-up recovered less: sample ResNet, channel
        # at half the MACs, 1 epoch on 10k images: 90.22 % with the decay, 90.94 % without); several epochs
        # decay to 5 % of the rate, so the last steps settle instead of bouncing.
        rate = learning_rate
        steps = epochs * -(-len(train) // batch_size)
        kind = ("cosine" if epochs > 1 else "constant") if schedule == "auto" else schedule
        if kind == "cosine":
            rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps, alpha=0.05)
        elif kind == "warmup-cosine":
            warm = max(1, steps // 10)
            rate = keras.optimizers.schedules.CosineDecay(learning_rate / 10, decay_steps=steps - warm, alpha=0.05,
                                                          warmup_target=learning_rate, warmup_steps=warm)
        student.compile(optimizer=keras.optimizers.Adam(rate), loss=loss)
        # without a view one fit call; with one, a fit call per epoch on a new view and the teacher's outputs on
        # it (the optimizer, and its schedule, runs on across the calls)
        x, calls = x0, (1 if view is None else epochs)
        for call in range(calls):
            if call:
                x = view(train.x, rng)
                targets = soft_targets(x)
            last = epochs if view is None else call + 1
            hist = student.fit(x, targets, initial_epoch=call, epochs=last, batch_size=batch_size, shuffle=True,
                               verbose=1 if verbose else 0)
            out["loss"] += [float(v) for v in hist.history["loss"]]
        out["steps"] = int(student.optimizer.iterations)  # one schedule over all epochs, augmented or not
        for lyr in frozen:
            lyr.trainable = True
        # leave a stock compile state so the saved .keras file loads anywhere (no custom loss inside)
        student.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy"
                        if probs else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    if val is not None:
        out["val_top1_after"] = top1(student, val)
    return out
