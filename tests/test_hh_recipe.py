"""Real-data plumbing: record slices, SFT on chosen answers, prompts taken from comparisons on purpose, recipe
variables and --set, the win rate's uncertainty; and recipes/hh-helpful.yaml end to end on a few dozen real
HH-RLHF rows (the tiny model standing in for SmolLM2)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from align import config as C
from align import data, evaluate, pipeline
from align.cli import app
from align.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]
HH = ROOT.parent / "shared" / "data" / "preference"
runner = CliRunner()


def hh_row(i: int, end_on_user: bool = False) -> dict:
    talk = f"\n\nHuman: question {i}?\n\nAssistant: an answer\n\nHuman: and more {i}?"
    if end_on_user:
        return {"chosen": talk, "rejected": talk}
    return {"chosen": talk + f"\n\nAssistant: good {i}", "rejected": talk + f"\n\nAssistant: bad {i}"}


def test_a_slice_selects_records_and_is_part_of_the_data_identity(jsonl):
    path = jsonl("hh.jsonl", [hh_row(i) for i in range(10)])
    head, tail = data.load_pairs(f"{path}[:80%]"), data.load_pairs(f"{path}[-2:]")
    assert [r.row for r in head.rows] == list(range(1, 9)) and [r.row for r in tail.rows] == [9, 10]
    assert head.files[0]["path"] == f"{path}[:80%]" and head.files[0]["rows"] == 8
    assert head.files[0]["sha256"] != data.load_pairs(path).files[0]["sha256"] != tail.files[0]["sha256"]
    assert data.exists(f"{path}[3:]") and not data.exists(f"{path}.missing[3:]")
    with pytest.raises(DataError, match=r"no rows in \[20:\]"):
        data.load_pairs(f"{path}[20:]")


def test_sft_trains_on_the_chosen_answers_of_comparisons(jsonl):
    hh = jsonl("hh.jsonl", [hh_row(0), hh_row(1, end_on_user=True), hh_row(2)])
    loaded = data.load_sft(hh)
    assert [r.row for r in loaded.rows] == [1, 3] and loaded.skipped == {"dialogue does not end with an answer": 1}
    msgs = loaded.rows[0].value["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"]
    assert msgs[-1]["content"] == "good 0" and loaded.files[0]["format"] == "chosen"
    pairs = jsonl("pairs.jsonl", [{"prompt": "p", "chosen": "yes", "rejected": "no"}])
    assert data.load_sft(pairs).rows[0].value["messages"] == [{"role": "user", "content": "p"},
                                                              {"role": "assistant", "content": "yes"}]


def test_prompts_come_from_comparisons_only_when_asked(jsonl):
    hh = jsonl("hh.jsonl", [hh_row(0), hh_row(1)])
    with pytest.raises(DataError, match="set comparison_prompts"):
        data.load_prompts(hh)
    prompts = data.load_prompts(hh, comparisons=True).values()
    assert [m["content"] for m in prompts[1]["prompt"]] == ["question 1?", "an answer", "and more 1?"]


def test_recipe_vars_and_set_overrides(tiny_model, tmp_path, jsonl):
    hh = jsonl("hh.jsonl", [hh_row(i) for i in range(8)])
    recipe = {"vars": {"d": "/nowhere"}, "output": str(tmp_path / "runs"),
              "stages": {"sft": {"model": tiny_model, "data": "${d}/hh.jsonl[:4]"}}}
    with pytest.raises(ConfigError, match=r"data '/nowhere/hh.jsonl\[:4\]' does not exist"):
        pipeline.plan(recipe, "r.yaml")
    _, steps = pipeline.plan(C.override(recipe, [f"vars.d={Path(hh).parent}", "stages.sft.max_steps=3"]), "r.yaml")
    assert steps[0][2].data == [f"{Path(hh).parent}/hh.jsonl[:4]"] and steps[0][2].max_steps == 3
    with pytest.raises(ConfigError, match=r"'\$\{e\}' is used but not defined under vars \(defined: d\)"):
        pipeline.plan(C.override(recipe, ["stages.sft.data=${e}/x"]), "r.yaml")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        C.override(recipe, ["stages.sft.data"])


def test_win_rate_standard_error():
    rate, se = evaluate.win_rate([1.0, 2.0, 0.0, 5.0], [0.0, 2.0, 1.0, 1.0])  # win, tie, loss, win
    assert rate == pytest.approx(0.625)
    assert se == pytest.approx((sum((o - 0.625) ** 2 for o in (1, 0.5, 0, 1)) / 3 / 4) ** 0.5)
    assert evaluate.win_rate([1.0] * 5, [0.0] * 5) == (1.0, 0.0)


def test_an_answer_identical_to_the_references_is_a_tie():
    """Scored in another batch, the same answer comes back a float step apart: that is not a win or a loss."""
    class Judge:
        def score(self, prompts, answers):
            return [0.5 + 1e-7 if a == "same" else 0.9 for a in answers]

    reference = {"answers": ["same", "old", "same"], "scores": [0.5, 0.3, 0.5]}
    mine = evaluate.judged(Judge(), [[]] * 3, ["same", "new", "different"], reference)
    assert mine == [0.5, 0.9, 0.9]
    assert evaluate.win_rate(mine, reference["scores"])[0] == pytest.approx((0.5 + 1 + 1) / 3)


def write_hh_subset(folder: Path, rows: dict[str, int]) -> None:
    folder.mkdir()
    for name, n in rows.items():
        with gzip.open(HH / f"{name}.jsonl.gz", "rt") as f:
            lines = [line for line in f if line.strip()][:n]
        with gzip.open(folder / f"{name}.jsonl.gz", "wt") as f:
            f.write("".join(lines))


@pytest.mark.slow
@pytest.mark.skipif(not HH.exists(), reason="the HH-RLHF files are in ../shared (not part of the project)")
def test_hh_recipe_end_to_end_on_a_few_dozen_rows(tiny_model, tmp_path):
    """The real recipe, its paths set from the command line, on 140 real rows per file: parsing, templating,
    truncation counts and the evaluation report with the judge-reward-vs-KL curve over PPO's snapshots."""
    write_hh_subset(tmp_path / "hh", {"hh_helpful_rejection_sampled_test": 140, "hh_helpful_online_test": 300})
    sets = [f"vars.hh={tmp_path / 'hh'}", f"output={tmp_path / 'runs'}", "eval.max_new_tokens=6",
            "stages.ppo.max_new_tokens=6", "stages.ppo.steps=4", "stages.ppo.snapshot_steps=2"]
    for stage in ("sft", "rm", "judge", "dpo"):
        sets += [f"stages.{stage}.max_steps=2", f"stages.{stage}.batch_size=4"]
    sets += [f"stages.sft.model={tiny_model}", f"stages.judge.model={tiny_model}"]
    result = runner.invoke(app, ["run", str(ROOT / "recipes" / "hh-helpful.yaml"), *sum([["--set", s] for s in sets], [])])
    assert result.exit_code == 0, result.output
    runs = tmp_path / "runs"
    sft = json.loads((runs / "sft" / "align.json").read_text())
    assert sft["data"]["train"][0]["format"] == "chosen" and sft["data"]["train"][0]["rows"] > 130
    ppo = json.loads((runs / "ppo" / "align.json").read_text())
    assert ppo["data"]["counts"]["truncated_prompts"] > 0  # real HH dialogues exceed 192 tokens
    assert sorted(p.name for p in (runs / "ppo" / "snapshots").iterdir()) == ["step-2"]
    judge = json.loads((runs / "judge" / "align.json").read_text())
    assert judge["data"]["train"][0]["path"].endswith("hh_helpful_online_test.jsonl.gz[50%:-100]")
    rm = json.loads((runs / "rm" / "align.json").read_text())
    assert rm["data"]["train"][0]["path"].endswith("hh_helpful_online_test.jsonl.gz[:50%]")
    ev = json.loads((runs / "report" / "eval.json").read_text())
    assert ev["judge"] == str(runs / "judge")
    by_run = {Path(r["run"]).name: r for r in ev["results"]}
    assert by_run["rm"]["pairs"] == by_run["judge"]["pairs"] >= 95  # online[-100:] (a few rows may be unusable)
    assert judge["data"]["train"][0]["rows"] <= 50  # [50%:-100] of 300 rows: rows 150-199, never the held-out
    assert rm["data"]["train"][0]["rows"] <= 150  # nor the judge's
    assert [c["step"] for c in by_run["ppo"]["curve"]] == [2, 4]
    assert by_run["ppo"]["curve"][-1]["win_rate"] == by_run["ppo"]["win_rate"]
    for name in ("sft", "ppo", "dpo"):
        r = by_run[name]
        assert 0 <= r["win_rate"] <= 1 and r["win_rate_se"] >= 0 and r["reference_length"] > 0
    text = (runs / "report" / "report.md").read_text()
    assert "+-" in text and "| iterations | KL (nats) | sqrt KL |" in text
    assert (runs / "report" / "reward_vs_sqrt_kl_ppo.png").stat().st_size > 1000
