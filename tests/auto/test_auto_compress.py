"""`compress` with scheme "auto": a scheme and rank per layer from a budget, measured on the real runtime."""

import json
import warnings

import keras
import numpy as np
import pytest

from edge_lowrank.profile import profile_model
from edge_lowrank.rank.select import RankError
from edge_lowrank.rewrite import CompressionPolicy, compress


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    x = inp = keras.Input((16, 16, 8))
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="c1")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", name="c2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(64, 1, name="pw")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(10, name="fc")(x)
    return keras.Model(inp, out)


def test_policy_rejects_rank_rules_and_two_budgets():
    with pytest.raises(RankError, match="chooses ranks itself"):
        CompressionPolicy("auto", rank=8)
    with pytest.raises(RankError, match="one budget"):
        CompressionPolicy("auto", target_mac_ratio=0.5, target_latency_ratio=0.5)
    with pytest.raises(RankError, match="needs scheme='auto'"):
        CompressionPolicy("spatial", target_latency_ratio=0.5)
    with pytest.raises(RankError, match="cost_target"):
        CompressionPolicy("auto", cost_target="gpu")
    with pytest.raises(RankError, match="auto_schemes"):
        CompressionPolicy("auto", auto_schemes=("cp",))
    assert CompressionPolicy("auto").target_latency_ratio == 0.5


def test_mac_budget_without_measuring_meets_it_and_runs():
    m = _model()
    new, rep = compress(m, CompressionPolicy("auto", target_mac_ratio=0.5, cost_target="macs"))
    assert profile_model(new).macs <= 0.5 * profile_model(m).macs
    assert rep.auto["budget_met"] and rep.auto["unit"] == "MACs"
    chosen = {d.name: d.scheme for d in rep.layers if d.action == "factorized"}
    assert chosen and set(chosen.values()) <= {"spatial", "channel", "tucker2", "weight-svd"}
    x = np.random.default_rng(0).standard_normal((2, 16, 16, 8)).astype(np.float32)
    assert np.asarray(new(x)).shape == (2, 10)
    assert json.loads(rep.to_json())["auto"]["layers"]["c2"]["options"] > 0


def test_loose_budget_keeps_the_model():
    m = _model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, rep = compress(m, CompressionPolicy("auto", target_mac_ratio=1.0, cost_target="macs"))
    assert not rep.changed


@pytest.mark.slow
def test_latency_budget_on_the_host_uses_a_cached_cost_table(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_LOWRANK_CACHE", str(tmp_path))
    m = _model()
    new, rep = compress(m, CompressionPolicy("auto", target_latency_ratio=0.6))
    a = rep.auto
    assert a["unit"] == "us" and a["original_cost"] > 0 and a["measured"] > 0
    table = json.loads(open(a["table"]).read())
    assert a["table"].startswith(str(tmp_path)) and len(table["entries"]) == a["measured"]
    for name, d in a["layers"].items():  # never a factorized layer slower than the layer it replaced
        assert d["cost_after"] <= d["cost_before"]
    if a["budget_met"]:
        assert a["predicted_cost"] <= 0.6 * a["original_cost"] + 1e-6
    _, rep2 = compress(m, CompressionPolicy("auto", target_latency_ratio=0.6))
    assert rep2.auto["measured"] == 0  # every shape came from the table
    assert [d.ranks for d in rep2.layers] == [d.ranks for d in rep.layers]


def test_compress_cli_auto(tmp_path, capsys):
    from edge_lowrank.cli.main import main

    path = tmp_path / "m.keras"
    _model().save(path)
    rep = tmp_path / "rep.json"
    code = main(["compress", str(path), "--scheme", "auto", "--target-mac-ratio", "0.5", "--cost-target", "macs",
                 "-o", str(tmp_path / "small.keras"), "--json", str(rep), "-q"])
    out = capsys.readouterr().out
    assert code == 0 and "auto: whole-model MACs at most 0.5x" in out
    data = json.loads(rep.read_text())
    assert data["scheme"] == "auto" and data["mac_ratio"] <= 0.5
    assert main(["compress", str(path), "--scheme", "auto", "--rank", "8"]) != 0
    err = capsys.readouterr().err
    assert "chooses ranks itself" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_mac_budget_beats_the_fastest_single_scheme_in_predicted_cost():
    m = _model()
    x = np.random.default_rng(1).standard_normal((32, 16, 16, 8)).astype(np.float32)
    new, rep = compress(m, CompressionPolicy("auto", target_mac_ratio=0.5, cost_target="macs", calib_data=x))
    assert profile_model(new).macs <= 0.5 * profile_model(m).macs
    singles = rep.auto["single_schemes"]["single_scheme_cost"]
    assert {"spatial", "channel", "tucker2"} <= set(singles)
    beat = rep.auto["single_schemes"]["cost_to_beat"]
    assert beat is not None and rep.auto["predicted_cost"] <= beat + 1e-6
