"""benchmarks/bench_corpus.py: one row per corpus model, each in a child process, and one-line errors."""

import json

import pytest


@pytest.mark.slow
def test_two_models_two_schemes(load_bench, tmp_path, capsys):
    mod = load_bench("bench_corpus")
    out = tmp_path / "corpus.json"
    code = mod.main(["--models", "mlp,two_inputs", "--schemes", "channel,cp", "--no-bench", "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "graph MACs" in text and "mlp" in text and "two_inputs" in text
    rows = {r["model"]: r for r in json.loads(out.read_text())["rows"]}
    mlp = rows["mlp"]
    assert mlp["graph_macs"] == mlp["tflite_macs"] > 0
    assert mlp["int8"]["builtin_only"] and mlp["int8"]["partitions"] >= 1
    # cp takes no Dense layer: the MLP's budget cannot be met, and the table's note says so
    assert mlp["schemes"]["cp"]["ratio"] == 1.0 and "cannot be met" in mlp["schemes"]["cp"]["notes"][0]
    assert "mlp / cp: the MACs budget 0.5 cannot be met" in text
    assert 0.3 < rows["two_inputs"]["schemes"]["channel"]["ratio"] <= 0.55
    assert rows["two_inputs"]["int8"]["builtin_only"]  # each input calibrated on its own data


@pytest.mark.parametrize("args", [["--models", "nope"], ["--schemes", "svd"], ["--ratio", "0"]])
def test_bad_arguments_exit_2_with_one_line(load_bench, capsys, args):
    assert load_bench("bench_corpus").main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err
