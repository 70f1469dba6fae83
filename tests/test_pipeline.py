"""`align run`: stages hand off through manifests, complete stages are skipped, recipes are validated first."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from align.cli import app

from test_ppo import PROMPTS
from test_sft import qa_rows

runner = CliRunner()


def write_recipe(tmp_path, tiny_model, **extra_sft) -> str:
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in qa_rows()))
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in PROMPTS))
    recipe = {"output": str(tmp_path / "runs"), "stages": {
        "sft": {"model": tiny_model, "data": str(tmp_path / "qa.jsonl"), "max_steps": 10, "learning_rate": 5e-3,
                **extra_sft},
        "rl": {"stage": "ppo", "from": "sft", "reward": "rewards:share_of_a", "prompts": str(tmp_path / "prompts.jsonl"),
               "steps": 2, "rollout_batch_size": 4, "mini_batch_size": 4, "micro_batch_size": 4,
               "max_new_tokens": 6, "save_steps": 0, "sample_steps": 0},
    }}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return str(path)


def test_pipeline_runs_hands_off_and_skips_complete_stages(tiny_model, tmp_path):
    recipe = write_recipe(tmp_path, tiny_model)
    result = runner.invoke(app, ["run", recipe])
    assert result.exit_code == 0, result.output
    sft = json.loads((tmp_path / "runs" / "sft" / "align.json").read_text())
    rl = json.loads((tmp_path / "runs" / "rl" / "align.json").read_text())
    assert sft["status"] == rl["status"] == "complete"
    assert rl["lineage"]["adapters"] == [str((tmp_path / "runs" / "sft" / "adapter").resolve())]
    stamp = (tmp_path / "runs" / "sft" / "align.json").stat().st_mtime_ns
    again = runner.invoke(app, ["run", recipe, "--only", "sft"])
    assert again.exit_code == 0 and "sft: complete" in again.output and "rl:" not in again.output
    assert (tmp_path / "runs" / "sft" / "align.json").stat().st_mtime_ns == stamp


def test_a_stage_trained_on_a_run_that_was_replaced_runs_again(tiny_model, tmp_path):
    """`align run --only sft --overwrite` replaces the SFT adapter that the PPO run was trained on top of: that PPO
    run can no longer be rebuilt as trained, so it is refused as an input and `align run` trains it again."""
    from align import runs

    recipe = write_recipe(tmp_path, tiny_model)
    assert runner.invoke(app, ["run", recipe]).exit_code == 0
    rl = tmp_path / "runs" / "rl"
    assert runs.read_manifest(rl, require_complete=True)["lineage"]["sha256"] == [
        runs.fingerprint(tmp_path / "runs" / "sft" / "adapter")]
    again = runner.invoke(app, ["run", recipe, "--only", "sft", "--overwrite", "--set", "stages.sft.seed=7"])
    assert again.exit_code == 0, again.output
    with pytest.raises(runs.RunError, match=r"sft/adapter has changed since this run trained on top of it"):
        runs.read_manifest(rl, require_complete=True)
    result = runner.invoke(app, ["eval", str(rl), "--prompts", str(tmp_path / "prompts.jsonl")])
    assert result.exit_code == 2 and "run this stage again (--overwrite)" in result.output
    rerun = runner.invoke(app, ["run", recipe])
    assert rerun.exit_code == 0, rerun.output
    assert "sft: complete" in rerun.output and "rl: " in rerun.output and "has changed since the run in" in rerun.output
    assert runs.read_manifest(rl, require_complete=True)["status"] == "complete"


def test_a_stage_whose_run_died_before_it_started_runs_afresh(tiny_model, tmp_path):
    import os
    import subprocess
    import sys

    from align import runs

    recipe = write_recipe(tmp_path, tiny_model)
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    (tmp_path / "runs" / "sft").mkdir(parents=True)
    runs.write_json_atomic(tmp_path / "runs" / "sft" / runs.MANIFEST, {"align_manifest": 1, "stage": "sft",
                           "status": runs.RUNNING, **runs.process_info(), "pid": dead})
    result = runner.invoke(app, ["run", recipe, "--only", "sft"])
    assert result.exit_code == 0, result.output
    assert "running sft" in result.output and runs.read_manifest(tmp_path / "runs" / "sft")["status"] == "complete"
    assert os.getpid() != dead


def test_recipe_validate_names_the_bad_key(tiny_model, tmp_path):
    recipe = write_recipe(tmp_path, tiny_model, lerning_rate=0.1)
    result = runner.invoke(app, ["recipe", "validate", recipe])
    assert result.exit_code == 2
    assert "stages.sft: unknown key 'lerning_rate' for this stage (did you mean 'learning_rate'?)" in result.output
    assert not (tmp_path / "runs").exists()
    good = write_recipe(tmp_path, tiny_model)
    ok = runner.invoke(app, ["recipe", "validate", good])
    assert ok.exit_code == 0 and "rl: ppo ->" in ok.output
    assert runner.invoke(app, ["run", good, "--only", "nope"]).exit_code == 2
    recipe = yaml.safe_load(Path(good).read_text())
    dated = tmp_path / "dated.yaml"  # a YAML date is a value like any other (no JSON round trip)
    dated.write_text(yaml.safe_dump({**recipe, "vars": {"day": datetime.date(2026, 12, 3)}}, sort_keys=False))
    assert runner.invoke(app, ["recipe", "validate", str(dated)]).exit_code == 0
    for ev, message in [({"prompts": str(tmp_path / "prompts.jsonl"), "judge": 5}, "eval.judge must be a path or a "
                         "stage name, got 5"),
                        ({"prompts": str(tmp_path / "prompts.jsonl"), "max_prompt_length": 0},
                         "eval.max_prompt_length must be an integer >= 1, got 0"),
                        ({"prompts": str(tmp_path / "prompts.jsonl"), "comparison_prompts": "no"},
                         "eval.comparison_prompts must be true or false, got 'no'")]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(yaml.safe_dump({**recipe, "eval": ev}, sort_keys=False))
        result = runner.invoke(app, ["recipe", "validate", str(bad)])
        assert result.exit_code == 2 and message in result.output, result.output
    (tmp_path / "latin1.yaml").write_bytes("output: r\u00e9sultats\n".encode("latin-1"))
    result = runner.invoke(app, ["recipe", "validate", str(tmp_path / "latin1.yaml")])
    assert result.exit_code == 2 and "latin1.yaml: not UTF-8 text (byte 9)" in result.output, result.output


def test_full_pipeline_with_evaluation_report(tiny_model, tmp_path, monkeypatch):
    from align import infer

    from test_dpo import preference_pairs

    generated = []
    real_generate = infer.generate
    monkeypatch.setattr(infer, "generate", lambda *a, **k: generated.append(1) or real_generate(*a, **k))

    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in qa_rows()))
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in PROMPTS))
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in preference_pairs(64, 0)))
    (tmp_path / "eval_pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in preference_pairs(16, 1)))
    small = {"max_steps": 6, "learning_rate": 5e-3, "logging_steps": 2}
    recipe = {"output": str(tmp_path / "runs"), "stages": {
        "sft": {"model": tiny_model, "data": str(tmp_path / "qa.jsonl"), **small},
        "rm": {"from": "sft", "data": str(tmp_path / "pairs.jsonl"), **small},
        "ppo": {"from": "sft", "reward": "rm", "prompts": str(tmp_path / "prompts.jsonl"), "steps": 3,
                "rollout_batch_size": 4, "mini_batch_size": 4, "micro_batch_size": 4, "max_new_tokens": 6,
                "save_steps": 0, "sample_steps": 0},
        "dpo": {"from": "sft", "data": str(tmp_path / "pairs.jsonl"), **small},
    }, "eval": {"prompts": str(tmp_path / "prompts.jsonl"), "pairs": str(tmp_path / "eval_pairs.jsonl"),
                "judge": "rm", "max_new_tokens": 6, "max_prompt_length": 12}}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    report = tmp_path / "runs" / "report"
    ev = json.loads((report / "eval.json").read_text())
    by_stage = {r["stage"]: r for r in ev["results"]}
    assert set(by_stage) == {"sft", "rm", "ppo", "dpo"}
    assert 0.0 <= by_stage["rm"]["accuracy"] <= 1.0 and by_stage["rm"]["pairs"] == 16
    for stage in ("ppo", "dpo"):
        r = by_stage[stage]
        assert 0.0 <= r["win_rate"] <= 1.0 and r["reference"].endswith("sft")
        assert abs(r["kl_to_reference"]) < 100 and len(r["samples"]) == 5
    # PPO and DPO start from the same SFT run: its answers are generated and judged once, for both
    assert by_stage["ppo"]["reference_reward"] == by_stage["dpo"]["reference_reward"]
    assert len(generated) == 5  # base (SFT's reference), SFT, SFT (PPO/DPO's reference), PPO, DPO: 6 without it
    text = (report / "report.md").read_text()
    assert "| policy | stage | reference | mean reward |" in text and "| reward model | pairs | accuracy |" in text
    assert "### Reward vs KL to" in text and "ppo, dpo against" in text  # SFT vs its base apart from PPO/DPO vs SFT
    assert re.search(r"\| \S+/runs/ppo \| ppo \| complete \| \d+\.\d min \|", text), text  # wall time per stage
    assert ev["wall_s"] > 0 and "This evaluation took" in text
    from align import chat, models

    tok = models.load_tokenizer(str(tmp_path / "runs" / "ppo" / "tokenizer"))
    cut = sum(len(chat.prompt_ids(tok, [{"role": "user", "content": p["prompt"]}])) > 12 for p in PROMPTS)
    assert ev["max_prompt_length"] == 12 and by_stage["ppo"]["truncated_prompts"] == cut > 0, ev  # counted, said
    assert f"Prompts over 12 tokens keep their last ones: {cut} of the held-out prompts." in text
    for png in ("reward_vs_kl_1.png", "reward_vs_kl_2.png", "curves_sft.png", "curves_rm.png", "curves_ppo.png",
                "curves_dpo.png"):
        assert (report / png).stat().st_size > 1000, png
    # a new reward model: the PPO run trained against the old one is trained again, the DPO run is not
    from align import runs

    ppo, rm = tmp_path / "runs" / "ppo", tmp_path / "runs" / "rm"
    assert runs.read_manifest(ppo)["reward_model"]["sha256"] == runs.fingerprint(rm / "adapter")
    assert runner.invoke(app, ["run", str(path), "--only", "rm", "--overwrite", "--set", "stages.rm.seed=7"]).exit_code == 0
    assert runs.reward_changes(runs.read_manifest(ppo)) == f"the reward model {(rm / 'adapter').resolve()} has changed"
    again = runner.invoke(app, ["run", str(path), "--only", "ppo", "--only", "dpo"])
    assert again.exit_code == 0, again.output
    assert "ppo: the reward model" in again.output and "dpo: complete" in again.output
    assert runs.read_manifest(ppo)["reward_model"]["sha256"] == runs.fingerprint(rm / "adapter")


def test_an_interrupted_stage_resumes_on_rerun(tiny_model, tmp_path, monkeypatch):
    from transformers import TrainerCallback

    from align import train

    recipe = write_recipe(tmp_path, tiny_model, save_steps=4)

    class Crash(Exception):
        pass

    class CrashAt6(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 6:
                raise Crash()

    real = train.use_our_callbacks
    monkeypatch.setattr(train, "use_our_callbacks", lambda tr, run: (real(tr, run), tr.add_callback(CrashAt6())))
    first = runner.invoke(app, ["run", recipe])
    assert isinstance(first.exception, Crash)
    assert json.loads((tmp_path / "runs" / "sft" / "align.json").read_text())["status"] == "interrupted"
    monkeypatch.setattr(train, "use_our_callbacks", real)
    again = runner.invoke(app, ["run", recipe])
    assert again.exit_code == 0, again.output
    assert "sft: resuming sft" in again.output and "resuming from" in again.output
    sft = json.loads((tmp_path / "runs" / "sft" / "align.json").read_text())
    assert sft["status"] == "complete" and sft["metrics"]["steps"] == 10
    assert json.loads((tmp_path / "runs" / "rl" / "align.json").read_text())["status"] == "complete"


def test_reward_vs_kl_is_one_plot_per_reference(tmp_path):
    """Points compared with different models never share an axis: SFT is measured against the base, DPO and PPO
    against the SFT run; each plot is titled and captioned with its reference."""
    from align import report

    def policy(run, stage, reference, reward, kl):
        return {"run": run, "stage": stage, "kind": "policy", "reference": reference, "reward": reward,
                "reference_reward": 0.1, "win_rate": 0.5, "kl_to_reference": kl, "response_length": 5.0,
                "samples": []}

    results = [policy("runs/sft", "sft", "smollm2-135m", 0.4, 2.0), policy("runs/ppo", "ppo", "runs/sft", 0.9, 1.5),
               policy("runs/dpo", "dpo", "runs/sft", 0.7, 0.5), {**policy("runs/x", "dpo", "runs/sft", None, 0.1)}]
    assert {k: [r["run"] for r in v] for k, v in report.by_reference(results).items()} == {
        "smollm2-135m": ["runs/sft"], "runs/sft": ["runs/ppo", "runs/dpo"]}  # unjudged runs/x: no point
    out = {"judge": "runs/rm", "prompts": "p.jsonl", "pairs": None, "results": results}
    text = report.write(out, {}, tmp_path).read_text()
    assert "### Reward vs KL to smollm2-135m\n\nsft against smollm2-135m, the model it started from" in text
    assert "### Reward vs KL to runs/sft\n\nppo, dpo against runs/sft, the model they started from" in text
    assert "![reward vs KL to runs/sft](reward_vs_kl_2.png)" in text
    assert "| runs/ppo | ppo | runs/sft | 0.900 |" in report.tables(out)  # the table names each one's reference
    for png in ("reward_vs_kl_1.png", "reward_vs_kl_2.png"):
        assert (tmp_path / png).stat().st_size > 1000
    assert not (tmp_path / "reward_vs_kl_3.png").exists()


def test_report_gives_each_stage_its_wall_time(tmp_path):
    """Calendar time from creation to finish (a resume's pause counts), across time zones; '-' while unfinished."""
    from align import report

    done = {"stage": "rm", "status": "complete", "created": "2026-12-03T10:00:00+0000",
            "finished": "2026-12-03T13:30:30+0100", "resumes": [{"time": "2026-12-03T11:00:00+0000"}],
            "metrics": {"loss_end": 0.5}}
    running = {"stage": "sft", "status": "running", "created": "2026-12-03T10:00:00+0000", "metrics": {}}
    out = {"judge": None, "prompts": None, "pairs": None, "results": [], "wall_s": 90.0}
    text = report.write(out, {"runs/rm": done, "runs/sft": running}, tmp_path).read_text()
    assert "| runs/rm | rm | complete | 150.5 min (1 resume) | loss_end 0.500 |" in text
    assert "| runs/sft | sft | running | - |" in text and "This evaluation took 1.5 min." in text


def test_plots_of_runs_with_the_same_folder_name_do_not_replace_each_other():
    from align import report

    assert report.slugs(["runs/a/ppo", "runs/b/ppo", "runs/sft", "runs/a/ppo", "runs/c/ppo"]) == {
        "runs/a/ppo": "ppo", "runs/b/ppo": "ppo_2", "runs/sft": "sft", "runs/c/ppo": "ppo_3"}
