"""`auto`'s cost table timed by a pool of Ray actors on the nodes of this machine's CPU kind (a real Ray)."""

import json

import pytest

from edge_lowrank.auto import cost_pool


def test_only_nodes_of_this_cpu_and_runtime_join_the_pool():
    mine = {"cpu": "AMD EPYC 7B13", "runtime": "ai-edge-litert 2.3.0"}
    prints = {"n2": mine, "n1": dict(mine), "arm": {"cpu": "Cortex-A76", "runtime": mine["runtime"]},
              "old": {"cpu": mine["cpu"], "runtime": "ai-edge-litert 2.2.0"}}
    assert cost_pool.matching(prints, mine) == ["n1", "n2"]


@pytest.mark.slow
def test_cost_table_timed_on_the_pool_is_saved_under_this_fingerprint(tmp_path, monkeypatch):
    pytest.importorskip("ray", reason="the `ray` extra is not installed (make test installs it)")
    import keras

    from edge_lowrank.auto.costs import CostTable

    def conv(width):
        def build():
            inp = keras.Input((8, 8, 8), batch_size=1)
            return keras.Model(inp, keras.layers.Conv2D(width, 3, padding="same")(inp))
        return build

    monkeypatch.setenv(cost_pool.ENV, "ray")  # a Ray started on this machine for the pool
    monkeypatch.setattr(cost_pool, "_POOL", [])
    pool = cost_pool.from_env()
    try:
        assert cost_pool.from_env() is pool  # one pool per process
        assert len(pool.nodes) == 1 and not pool.skipped  # this machine: one node, its own CPU
        table = CostTable("host", path=tmp_path / "t.json")  # no pool given: the environment's
        items = [(f"conv{w}", conv(w)) for w in (8, 16, 32)]
        costs = table.lookup(items)
        assert table.measured == 3 and all(c > 0 for c in costs)
        saved = json.loads((tmp_path / "t.json").read_text())
        assert saved["fingerprint"] == table.fingerprint and set(saved["entries"]) == {"conv8", "conv16", "conv32"}
        assert pool.time([]) == []
    finally:
        pool.close()
