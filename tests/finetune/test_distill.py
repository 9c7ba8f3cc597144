"""Distillation recovers accuracy lost by a rewrite, on real Fashion-MNIST data."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from edge_lowrank.data import Dataset  # noqa: E402
from edge_lowrank.errors import DataError  # noqa: E402
from edge_lowrank.finetune import distill, top1  # noqa: E402
from edge_lowrank.rewrite import CompressionPolicy, compress  # noqa: E402

L = keras.layers


@pytest.fixture(scope="module")
def fmnist():
    from edge_lowrank.data import load_dataset

    try:
        train = load_dataset("fashion-mnist:train")
        test = load_dataset("fashion-mnist:test")
    except Exception as e:  # the data set is a system package
        pytest.skip(f"Fashion-MNIST not available: {e}")
    sub = lambda d, n: Dataset(d.x[:n, ::2, ::2], d.y[:n], d.name)  # 14x14 keeps the test quick
    return sub(train, 3000), sub(test, 1000)


@pytest.fixture(scope="module")
def teacher(fmnist):
    train, _ = fmnist
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((14, 14, 1)), L.Conv2D(16, 3, activation="relu", name="c1"),
                          L.Conv2D(32, 3, strides=2, activation="relu", name="c2"), L.Flatten(),
                          L.Dense(64, activation="relu", name="fc"), L.Dense(10, activation="softmax", name="out")])
    m.compile("adam", "sparse_categorical_crossentropy")
    m.fit(train.x, train.y, epochs=3, batch_size=64, verbose=0)
    return m


@pytest.mark.slow
def test_distillation_recovers_accuracy(fmnist, teacher, tmp_path):
    train, val = fmnist
    student, _ = compress(teacher, CompressionPolicy("channel", rank=2, rank_multiple=1))
    t_weights = [w.copy() for w in teacher.get_weights()]
    hist = distill(student, teacher, train, epochs=2, batch_size=64, val=val, verbose=False)
    assert hist["val_top1_after"] > hist["val_top1_before"] + 0.03, hist
    assert hist["val_top1_after"] == pytest.approx(top1(student, val))
    assert len(hist["loss"]) == 2 and hist["loss"][1] < hist["loss"][0]
    for a, b in zip(t_weights, teacher.get_weights()):  # the teacher is left as it was
        np.testing.assert_array_equal(a, b)
    student.save(tmp_path / "s.keras")  # stock compile state: loads with compile=True
    keras.models.load_model(tmp_path / "s.keras")


def test_bad_data():
    keras.utils.set_random_seed(1)
    m = keras.Sequential([keras.Input((6, 6, 1)), L.Flatten(), L.Dense(3, activation="softmax")])
    x = np.random.default_rng(0).random((8, 6, 6, 1)).astype("float32")
    with pytest.raises(DataError, match="no labels"):  # top-1 on validation data needs labels
        distill(m, m, Dataset(x, np.zeros(8, int), "x"), val=Dataset(x, None, "v"), epochs=0)
    with pytest.raises(DataError, match="shape"):
        distill(m, m, Dataset(np.zeros((4, 28, 28, 1), "float32"), np.zeros(4, int), "big"), epochs=0)
    with pytest.raises(DataError, match="labels outside"):
        distill(m, m, Dataset(x[:4], np.array([0, 1, 2, 3]), "y"), epochs=0)
    with pytest.raises(ValueError, match="temperature"):
        distill(m, m, Dataset(x, np.zeros(8, int), "x"), temperature=0.0)


def test_one_epoch_on_synthetic_labels_lowers_the_loss():
    """Fast check of the training loop: a student distilled from a teacher moves towards it."""
    keras.utils.set_random_seed(2)
    rng = np.random.default_rng(2)
    x = rng.random((256, 6, 6, 1)).astype("float32")
    teacher = keras.Sequential([keras.Input((6, 6, 1)), L.Flatten(), L.Dense(16, activation="relu"),
                                L.Dense(4, activation="softmax")])
    y = np.argmax(teacher.predict(x, verbose=0), axis=-1)
    student, _ = compress(teacher, CompressionPolicy("weight-svd", rank=1, rank_multiple=1))
    hist = distill(student, teacher, Dataset(x, y, "synthetic"), epochs=3, batch_size=32,
                   val=Dataset(x, y, "synthetic"), verbose=False)
    assert hist["loss"][-1] < hist["loss"][0]
    assert hist["teacher_val_top1"] == 1.0
    assert hist["val_top1_after"] >= hist["val_top1_before"]


def test_unlabelled_data_distil_on_the_teacher_alone():
    """No labels: the loss is the soft-target term only, and the student still moves towards the teacher."""
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    x = rng.random((256, 6, 6, 1)).astype("float32")
    teacher = keras.Sequential([keras.Input((6, 6, 1)), L.Flatten(), L.Dense(16, activation="relu"),
                                L.Dense(4, activation="softmax")])
    y = np.argmax(teacher.predict(x, verbose=0), axis=-1)
    student, _ = compress(teacher, CompressionPolicy("weight-svd", rank=1, rank_multiple=1))
    hist = distill(student, teacher, Dataset(x, None, "unlabelled"), epochs=3, batch_size=32,
                   val=Dataset(x, y, "teacher's top-1"), verbose=False)
    assert hist["labels"] is False and hist["alpha"] == 0.0
    assert hist["loss"][-1] < hist["loss"][0]
    assert hist["val_top1_after"] >= hist["val_top1_before"]


def test_the_same_model_fine_tunes_the_same_whatever_built_it():
    """A Dropout draws its seed when it is built, from the global stream then: two rewrites that build the same
    function under different streams (auto returning channel's model, in `run` each variant is seeded by its
    name) must still fine-tune to the same weights, and a different seed must give different masks."""
    rng = np.random.default_rng(4)
    x = rng.random((256, 6, 6, 1)).astype("float32")
    keras.utils.set_random_seed(4)
    teacher = keras.Sequential([keras.Input((6, 6, 1)), L.Flatten(), L.Dense(32, activation="relu", name="fc"),
                                L.Dropout(0.5, name="drop"), L.Dense(4, activation="softmax", name="out")])
    y = np.argmax(teacher.predict(x, verbose=0), axis=-1)

    def tuned(build_seed, seed=0):
        keras.utils.set_random_seed(build_seed)  # what the variant's own stream would be
        student, _ = compress(teacher, CompressionPolicy("weight-svd", rank=4, rank_multiple=1))
        distill(student, teacher, Dataset(x, y, "synthetic"), epochs=1, batch_size=32, verbose=False, seed=seed,
                reestimate="none")
        return student.get_weights()

    a, b, c = tuned(11), tuned(12), tuned(11, seed=1)
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(a, c))


def test_the_teachers_outputs_given_once_train_as_computed_here():
    """`auto`'s trials pass the teacher's outputs on the shared images once: the same weights as computing them
    inside, and outputs that do not belong to the images are refused in one line."""
    rng = np.random.default_rng(5)
    x = rng.random((128, 6, 6, 1)).astype("float32")
    keras.utils.set_random_seed(5)
    teacher = keras.Sequential([keras.Input((6, 6, 1)), L.Flatten(), L.Dense(16, activation="relu", name="fc"),
                                L.Dense(4, activation="softmax", name="out")])
    data = Dataset(x, None, "unlabelled")

    def tuned(**kw):
        student, _ = compress(teacher, CompressionPolicy("weight-svd", rank=2, rank_multiple=1))
        distill(student, teacher, data, epochs=1, batch_size=32, verbose=False, **kw)
        return student.get_weights()

    for a, b in zip(tuned(), tuned(teacher_out=teacher.predict(x, verbose=0))):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="teacher_out"):
        tuned(teacher_out=teacher.predict(x[:64], verbose=0))
    with pytest.raises(ValueError, match="without augmentation"):
        tuned(teacher_out=teacher.predict(x, verbose=0), augment="flip")
