"""`auto` with the fine-tuning data: whole choices built, distilled briefly and judged on held-out images."""

import types
import warnings

import keras
import numpy as np
import pytest

from edge_lowrank.auto.trial import MIN_HELD_OUT, judge, trial_split
from edge_lowrank.data import Dataset
from edge_lowrank.rank.select import RankError
from edge_lowrank.rewrite import CompressionPolicy, compress

L = keras.layers


def _teacher(seed=0):
    keras.utils.set_random_seed(seed)
    x = inp = keras.Input((12, 12, 3))
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="c1")(x)
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="c2")(x)
    x = L.MaxPooling2D()(x)
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="c3")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dropout(0.2, name="drop")(x)
    out = L.Dense(5, activation="softmax", name="fc")(x)
    return keras.Model(inp, out)


def _images(n, seed=1):
    return np.random.default_rng(seed).standard_normal((n, 12, 12, 3)).astype(np.float32)


def test_trial_split_trains_on_the_first_images_and_scores_on_the_next():
    x, y = _images(3000), np.arange(3000) % 5
    train, held = trial_split(Dataset(x, y, "d"), 5000)
    assert len(train) == 2000 and len(held) == 1000  # a third scores it, at most 1,000
    np.testing.assert_array_equal(held, x[2000:3000])
    np.testing.assert_array_equal(train.y, y[:2000])
    train, held = trial_split(Dataset(x, None, "unlabelled"), 500)
    assert len(train) == 500 and train.y is None and len(held) == 1000
    np.testing.assert_array_equal(held, x[500:1500])  # never an image the trial trained on
    assert trial_split(Dataset(x[:3 * MIN_HELD_OUT - 1], None, "few"), 5000) is None


def test_judge_keeps_the_choice_that_recovers_and_returns_it_as_built():
    """Two real models stand for two whole choices: the original's twin and a damaged copy. The trial distils
    each; the twin stays closer to the original, wins, and comes back with its weights as built."""
    teacher = _teacher()
    twin = keras.models.clone_model(teacher)
    twin.set_weights(teacher.get_weights())
    damaged = keras.models.clone_model(teacher)
    w = teacher.get_weights()
    rng = np.random.default_rng(3)
    damaged.set_weights([v + rng.normal(0, 0.5 * (np.std(v) + 1e-3), v.shape).astype(v.dtype) for v in w])
    built = {"damaged": damaged, "twin": twin}
    tried = []
    auto = types.SimpleNamespace(alternatives=["damaged", "twin"], objective="task: ...", trial=None,
                                 try_choice=tried.append)
    current = {}

    def build():
        current["model"] = built[tried[-1]]
        return current["model"], [f"decisions of {tried[-1]}"]

    policy = CompressionPolicy(trial_data=Dataset(_images(900), None, "unlabelled"), trial_samples=400)
    student, decisions = judge(teacher, policy, auto, build)
    assert student is twin and decisions == ["decisions of twin"]
    for a, b in zip(student.get_weights(), w):  # the trial trained it; what comes back is the model as built
        np.testing.assert_array_equal(a, b)
    rows = auto.trial["rows"]
    assert set(rows) == {"damaged", "twin"} and auto.trial["chosen"] == "twin"
    assert rows["twin"]["shift"] < rows["damaged"]["shift"]
    assert auto.trial["samples"] == 400 and auto.trial["held_out"] == 300
    assert tried == ["damaged", "twin", "twin"]  # the plans are left describing the winner
    assert auto.objective.endswith("the least shift on 300 others: twin")


def test_compress_auto_judges_its_whole_choices_on_the_fine_tuning_data():
    teacher = _teacher()
    calib = _images(32)
    train = Dataset(_images(600, seed=2), None, "unlabelled")
    kw = dict(target_mac_ratio=0.5, cost_target="macs", calib_data=calib, auto_objective="task")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain, rep0 = compress(teacher, CompressionPolicy("auto", **kw))
        new, rep = compress(teacher, CompressionPolicy("auto", trial_data=train, trial_samples=300, **kw))
    a0, a = rep0.auto, rep.auto
    assert a0["trial"] is None and a0["alternatives"] and len(a0["alternatives"]) > 1
    trial = a["trial"]
    for name, c in a["candidates"].items():  # a choice two objectives share is judged once
        if c["met"] and name not in a["alternatives"]:
            assert any((a["candidates"][n]["shift"], a["candidates"][n]["cost"]) == (c["shift"], c["cost"])
                       for n in a["alternatives"])
    assert list(trial["rows"]) == a0["alternatives"] == a["alternatives"]  # every choice that met the budget
    chosen = trial["chosen"]
    assert trial["rows"][chosen]["shift"] == min(r["shift"] for r in trial["rows"].values())
    assert [n for n, c in a["candidates"].items() if c["chosen"]] == [chosen]
    assert trial["before_trial"] == a0["alternatives"][0]
    assert a["objective"].endswith(f"the least shift on 200 others: {chosen}")
    # the report describes the model returned: its layers are the chosen choice's, and the model is as built
    assert a["budget_met"] and rep.macs_after <= 0.5 * rep.macs_before + 1e-6
    # the report describes the model returned: each layer as built is the chosen choice's option, and the built
    # model's MACs (counted on its graph) are what the plan predicted for that choice
    for d in rep.layers:
        want = a["layers"][d.name]["chosen"]
        got = "original" if d.action == "kept" else f"{d.scheme} {'x'.join(map(str, d.ranks))}"
        assert got == want, (d.name, got, want)
    assert rep.macs_after == a["candidates"][chosen]["macs"]
    if chosen == trial["before_trial"]:  # the same choice as without a trial: the same model, untrained
        for x, y in zip(new.get_weights(), plain.get_weights()):
            np.testing.assert_array_equal(x, y)
    assert a["predicted_cost"] == pytest.approx(a["candidates"][chosen]["cost"])
    assert "trial" in rep.to_dict()["auto"] and "try_choice" not in rep.to_dict()["auto"]


def test_too_little_data_leaves_the_choice_as_it_was():
    teacher = _teacher()
    built = []
    auto = types.SimpleNamespace(alternatives=["a", "b"], objective="task: ...", trial=None,
                                 try_choice=lambda name: pytest.fail("no choice is tried"))
    policy = CompressionPolicy(trial_data=Dataset(_images(3 * MIN_HELD_OUT - 1), None, "few"))
    out = judge(teacher, policy, auto, lambda: built.append(1) or ("model", "decisions"))
    assert out == ("model", "decisions") and built == [1]
    assert auto.trial["note"].startswith("not judged by a trial: 191 images") and auto.objective == "task: ..."


def test_trial_settings_are_checked():
    with pytest.raises(RankError, match="trial_samples"):
        CompressionPolicy("auto", trial_samples=0)
