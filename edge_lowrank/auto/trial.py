"""Judge `auto`'s whole choices by a short fine-tune, when fine-tuning will follow the rewrite.

Why: with calibration data `auto` measures a few whole choices (the task objective's, kernel error's, each
single scheme's that fits the budget) by their output shift before fine-tuning. That shift does not rank choices
as fine-tuning leaves them. On the sample VGG at 2x fewer MACs kernel error's choice shifts the output least
before fine-tuning (KL 0.85, channel's 0.90), and ends below channel after one epoch with every seed (89.60 %
against 90.03 %, three seeds, the 96a0725 frontier). After a one-pass distillation on 5,000 images it is the
worst of the three with every trial seed (held-out KL 0.098-0.115 against 0.076-0.088); at 4x it is the best
with every seed, as after the full fine-tune (88.83 % against channel's 88.47 %). With 2,000 images the winner
changed with the seed (docs/auto.md, `benchmarks/bench_auto_trial.py`). So when the caller passes the data
fine-tuning will use (`CompressionPolicy.trial_data`, which `run` does), each choice is built, distilled one
pass over the first `trial_samples` images (the recipe `run` fine-tunes with: affine re-estimation, then
distillation at its default rate) and judged by its output shift (KL of the softmax) from the original on the
next images, which no trial trained on; the least shift wins. The built model is returned with its weights from
before the trial: the trial only judges, the real fine-tune starts from the rewrite. Every trial uses the same
seed, data order and dropout masks (`finetune.reseed`), so the choices differ only in what they are.

A trial is a short fine-tune, not the whole one. With 2,000 images the thinned output-channels model of the
VGG at 2x looked best (held-out KL 0.089) and was the worst after the whole 10,000-image fine-tune (0.067
against 0.052); with 5,000 on the ResNet it ranked thinning below factorizing at 3x and 4x (0.055 against
0.032, 0.133 against 0.070), as the fine-tune does. Plain conv pairs still stay out of the task objective
(`plan._units`): offered, output-channels becomes the time to beat and `auto` returns its thinned model at
ResNet 3x, 0.46 points below spatial's for 15 % less time.
"""

from __future__ import annotations

import time

import numpy as np

HELD_OUT = 1000  # images scoring each trial (a third of the data when it is smaller)
MIN_HELD_OUT = 64  # below this a shift is too noisy to rank choices: no trial


def trial_split(data, samples: int):
    """(training part, held-out images) of `data` for the trials, or None when it is too small to judge on."""
    n = len(data)
    held = min(HELD_OUT, n // 3)
    if held < MIN_HELD_OUT:
        return None
    k = min(samples, n - held)
    return data.take(k), data.x[k:k + held]


def output_shift(student, x, teacher_out) -> tuple[float, float]:
    """(output shift from the teacher's outputs `teacher_out`, top-1 agreement) on images `x`, as `auto`'s probe
    measures it (KL of the softmax; relative squared error for outputs that are not probabilities)."""
    from edge_lowrank.auto.sensitivity import agreement, divergence

    out = [np.asarray(student.predict(x, batch_size=256, verbose=0))]
    return divergence(teacher_out, out), agreement(teacher_out, out)


def judge(model, policy, auto, build):
    """Build each of `auto.alternatives` with `build()` after `auto.try_choice(name)`, distil it briefly and keep
    the one with the least held-out output shift. Returns what `build` returns for it, its weights as built;
    `auto` (the report) then describes that choice, with every trial in `auto.trial`."""
    from edge_lowrank.finetune import distill

    single = len(model.inputs) == 1 and len(model.outputs) == 1
    split = trial_split(policy.trial_data, policy.trial_samples) if single else None
    if split is None:  # the choice `plan_auto` made stands
        auto.trial = {"note": "not judged by a trial: " + (
            f"{len(policy.trial_data)} images, fewer than {3 * MIN_HELD_OUT} (a third of them score it)" if single
            else "the model has several inputs or outputs")}
        return build()
    train, held = split
    t_held = [np.asarray(model.predict(held, batch_size=256, verbose=0))]
    t_train = model.predict(train.x, batch_size=256, verbose=0)  # once: every trial distils on the same images
    rows, best = {}, None
    for name in auto.alternatives:
        auto.try_choice(name)
        student, decisions = build()
        weights = student.get_weights()
        t0 = time.monotonic()
        distill(student, model, train, epochs=1, verbose=False, seed=policy.trial_seed, teacher_out=t_train)
        shift, agree = output_shift(student, held, t_held)
        rows[name] = {"shift": shift, "agreement": agree, "seconds": round(time.monotonic() - t0, 2)}
        if best is None or shift < rows[best[0]]["shift"]:
            student.set_weights(weights)  # the rewrite as built; the caller fine-tunes it
            best = (name, student, decisions)
    name, student, decisions = best
    auto.try_choice(name)
    auto.trial = {"samples": len(train), "held_out": len(held), "epochs": 1, "seed": policy.trial_seed,
                  "rows": rows, "chosen": name, "before_trial": auto.alternatives[0]}
    auto.objective += (f"; then each built and distilled 1 pass on {len(train):,} of the fine-tuning images, the "
                       f"least shift on {len(held):,} others: {name}")
    return student, decisions


__all__ = ["judge", "trial_split", "output_shift"]
