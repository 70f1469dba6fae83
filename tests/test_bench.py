"""The benchmark harness runs on a CPU (tiny shape) and reports every field a GPU run reports."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_harness_measures_each_stage(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the PPO stand-in reward is named as bench.bench:length_reward
    sys.path.insert(0, str(ROOT))
    from bench import bench

    results = bench.main(["--sizes", "tiny", "--stages", "sft", "rm", "dpo", "ppo", "--steps", "3",
                          "--out", str(tmp_path / "b.json")])
    assert [r["stage"] for r in results] == ["sft", "rm", "dpo", "ppo"]
    for r in results:
        assert "error" not in r, r
        assert r["tokens_per_s"] > 0 and r["mfu"] > 0 and r["peak_gib"] > 0
    ppo = results[-1]
    assert ppo["episodes_per_s"] > 0 and ppo["rollout_tokens_per_s"] > 0 and ppo["update_tokens_per_s"] > 0
    saved = json.loads((tmp_path / "b.json").read_text())
    assert saved["peak_flops"] > 0 and len(saved["results"]) == 4
