"""Per-epoch augmentation for fine-tuning: the views are what they claim, and distillation trains on them."""

import numpy as np
import pytest

from edge_lowrank.finetune.augment import AUGMENTS, augment_images, augmenter


def _images(n=64, h=7, w=9):
    return np.random.default_rng(0).random((n, h, w, 2)).astype("float32")


def test_flip_only_gives_each_image_or_its_mirror():
    x = _images()
    v = augment_images(x, np.random.default_rng(1), flip=True, max_shift=0)
    same = np.all(v == x, axis=(1, 2, 3))
    mirrored = np.all(v == x[:, :, ::-1, :], axis=(1, 2, 3))
    assert np.all(same | mirrored) and 10 < mirrored.sum() < 54  # about half are mirrored


def test_shift_moves_each_image_by_at_most_two_pixels_with_zero_fill():
    x = _images() + 1.0  # no zeros inside, so the fill is visible
    v = augment_images(x, np.random.default_rng(2), flip=False, max_shift=2)
    assert v.shape == x.shape and v.dtype == np.float32
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    for i in range(len(x)):  # exactly one window of the zero-padded image matches
        hits = [(dy, dx) for dy in range(5) for dx in range(5)
                if np.array_equal(v[i], padded[i, dy:dy + 7, dx:dx + 9])]
        assert len(hits) == 1, i
    assert np.any(v == 0.0)  # some images did move


def test_views_are_seeded_and_none_is_no_view():
    x = _images()
    a = augmenter("flip+shift")(x, np.random.default_rng(5))
    b = augmenter("flip+shift")(x, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert augmenter("none") is None and set(AUGMENTS) == {"none", "flip", "shift", "flip+shift"}
    with pytest.raises(ValueError, match="rotate"):
        augmenter("rotate")


def test_sample_training_script_keeps_its_augmentation():
    """sample_models/train.py now calls this module; same draws, same images as its own code gave."""
    from sample_models.train import augment

    x = _images()
    rng = np.random.default_rng(7)
    flip = rng.random(len(x)) < 0.5
    ref = np.where(flip[:, None, None, None], x[:, :, ::-1, :], x)
    padded = np.pad(ref, ((0, 0), (2, 2), (2, 2), (0, 0)))
    dy, dx = rng.integers(0, 5, len(x)), rng.integers(0, 5, len(x))
    ref = np.stack([padded[i, dy[i]:dy[i] + 7, dx[i]:dx[i] + 9] for i in range(len(x))])
    np.testing.assert_array_equal(augment(x, np.random.default_rng(7), max_shift=2), ref)


def test_distill_with_augmentation_trains_one_schedule_over_all_epochs():
    keras = pytest.importorskip("keras")
    from edge_lowrank.data import Dataset
    from edge_lowrank.finetune import distill
    from edge_lowrank.finetune.distill import DistillError
    from edge_lowrank.rewrite import CompressionPolicy, compress

    L = keras.layers
    keras.utils.set_random_seed(4)
    x = np.random.default_rng(4).random((256, 6, 6, 1)).astype("float32")
    teacher = keras.Sequential([keras.Input((6, 6, 1)), L.Conv2D(8, 3, activation="relu"), L.Flatten(),
                                L.Dense(4, activation="softmax")])
    y = np.argmax(teacher.predict(x, verbose=0), axis=-1)
    student, _ = compress(teacher, CompressionPolicy("spatial", rank=1, rank_multiple=1))
    hist = distill(student, teacher, Dataset(x, y, "synthetic"), epochs=3, batch_size=32, augment="flip+shift",
                   val=Dataset(x, y, "synthetic"), verbose=False)
    assert hist["augment"] == "flip+shift" and len(hist["loss"]) == 3
    assert hist["loss"][-1] < hist["loss"][0]
    assert hist["steps"] == 3 * 8  # one optimizer across the three fit calls: the cosine schedule spans them
    assert hist["val_top1_after"] >= hist["val_top1_before"]
    with pytest.raises(DistillError, match="augment='rotate'"):
        distill(student, teacher, Dataset(x, y, "synthetic"), augment="rotate")
