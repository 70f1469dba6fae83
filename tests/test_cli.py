"""Recipes and flags, and the commands around a run: merge, generate."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from align import config
from align.cli import app
from align.errors import ConfigError

from test_sft import qa_rows

runner = CliRunner()


def test_recipe_then_flags_override(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: m\nlearning_rate: 1e-4\nlora_r: 4\ndata: a.jsonl\nfrom: null\n")
    cfg = config.build(config.SFTConfig, config.read_recipe(recipe), {"lora_r": 8, "output": "o"})
    assert (cfg.model, cfg.learning_rate, cfg.lora_r, cfg.data, cfg.output) == ("m", 1e-4, 8, ["a.jsonl"], "o")
    assert cfg.lora_alpha == 32  # untouched default


@pytest.mark.parametrize("text, message", [
    ("lerning_rate: 0.1\n", "r.yaml: unknown key 'lerning_rate' for this stage (did you mean 'learning_rate'?)"),
    ("lora_r: four\n", "r.yaml: key 'lora_r': expected int, got 'four'"),
    ("packing: 1\n", "r.yaml: key 'packing': expected bool, got 1"),
    ("- a\n- b\n", "r.yaml: a recipe is a mapping of keys to values"),
])
def test_recipe_errors_name_the_file_and_key(tmp_path, text, message):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    with pytest.raises(ConfigError) as e:
        config.build(config.SFTConfig, config.read_recipe(recipe), source=str(recipe))
    assert str(e.value).endswith(message), str(e.value)
    result = runner.invoke(app, ["sft", "--config", str(recipe)])
    assert result.exit_code == 2 and message in result.output


def test_sft_from_recipe_with_flag_override_merge_and_generate(tiny_model, tmp_path, jsonl):
    data = jsonl("qa.jsonl", qa_rows())
    recipe = tmp_path / "sft.yaml"
    recipe.write_text(f"model: {tiny_model}\ndata: [{data}]\nmax_steps: 2\nlearning_rate: 5e-3\nlora_r: 4\n")
    out = tmp_path / "run"
    result = runner.invoke(app, ["sft", "-c", str(recipe), "--max-steps", "50", "--output", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "align.json").read_text())
    assert manifest["config"]["max_steps"] == 50 and manifest["config"]["lora_r"] == 4
    assert manifest["metrics"]["steps"] == 50

    merged = tmp_path / "merged"
    result = runner.invoke(app, ["merge", str(out), "--output", str(merged)])
    assert result.exit_code == 0, result.output
    from transformers import AutoModelForCausalLM

    from align import models

    plain = AutoModelForCausalLM.from_pretrained(merged)  # stock transformers, no peft
    ours, tok, _ = models.load_run(str(out))
    ids = tok("what is the color of the sky", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(plain(ids).logits, ours(ids).logits, rtol=1e-5, atol=1e-5)
    assert not (merged / "adapter_config.json").exists() and (merged / "model.safetensors").exists()
    assert runner.invoke(app, ["merge", str(out), "--output", str(merged)]).exit_code == 2  # no silent overwrite

    answers = tmp_path / "answers.jsonl"
    result = runner.invoke(app, ["generate", str(out), "-p", "what is the color of the sky", "-p",
                                 "what is the color of grass", "--max-new-tokens", "6", "--output", str(answers)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in answers.read_text().splitlines()]
    assert [x["response"] for x in lines] == ["blue", "green"]  # batched, left-padded, stopped at end-of-turn


def test_missing_model_is_a_clear_error(tmp_path, jsonl):
    data = jsonl("qa.jsonl", qa_rows(1))
    result = runner.invoke(app, ["sft", "--model", "no-such-org/no-such-model", "--data", data,
                                 "--output", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "cannot load 'no-such-org/no-such-model'" in result.output and "smollm2-135m" in result.output
    assert not (tmp_path / "o").exists()
    result = runner.invoke(app, ["sft", "--data", data, "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no model: pass --model" in result.output


def test_chat_streams_answers_and_keeps_the_conversation(tiny_model, tmp_path, jsonl):
    from align import infer, sft

    from test_sft import sft_cfg

    sft.run(sft_cfg(tiny_model, jsonl("qa.jsonl", qa_rows()), tmp_path / "run", max_steps=60))
    lines = iter(["what is the color of the sky", "/reset", "what is the color of grass", "/exit"])
    history = infer.chat_loop(str(tmp_path / "run"), max_new_tokens=8, temperature=0.0, read=lambda _: next(lines))
    assert history == [{"role": "user", "content": "what is the color of grass"},
                       {"role": "assistant", "content": "green"}]
    result = runner.invoke(app, ["chat", str(tmp_path / "run"), "--temperature", "0", "--max-new-tokens", "8"],
                           input="what is the color of the sky\n")
    assert result.exit_code == 0 and "assistant> blue" in result.output


def test_merge_exports_a_reward_model_as_a_sequence_classifier(tmp_path, tiny_model):
    from transformers import AutoModelForSequenceClassification

    from align import config, reward_model, rm

    from test_rm import preference_pairs

    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in preference_pairs(32, 0)))
    rm.run(config.build(config.RMConfig, flags=dict(model=tiny_model, data=[str(tmp_path / "p.jsonl")],
                                                    output=str(tmp_path / "rm"), max_steps=3)))
    assert runner.invoke(app, ["merge", str(tmp_path / "rm"), "-o", str(tmp_path / "m")]).exit_code == 0
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "m")  # stock transformers
    ours = reward_model.load_reward_model(str(tmp_path / "rm"))
    batch = reward_model.encode_for_scoring(ours.tokenizer, [[{"role": "user", "content": "hi"}]], ["banana red"], ours.manifest)
    with torch.no_grad():
        expected = ours.score([[{"role": "user", "content": "hi"}]], ["banana red"])[0]
        got = reward_model.sequence_rewards(plain, batch["input_ids"], batch["attention_mask"])[0]
    assert float(got) == pytest.approx(expected, abs=1e-4)


def test_every_command_turns_an_align_error_into_one_line_and_its_exit_code():
    """cli.exits_on_align_error: `error: ...` and exit 2 (3 for a diverged run) instead of a traceback; any other
    exception is a bug and is not hidden."""
    import typer

    from align.cli import exits_on_align_error
    from align.errors import TrainingDiverged

    small = typer.Typer()

    @small.command()
    @exits_on_align_error
    def go(what: str = typer.Argument(...)) -> None:
        """A command that fails as told."""
        raise {"config": ConfigError("bad value"), "diverged": TrainingDiverged("loss is NaN"),
               "bug": KeyError("x")}[what]

    result = runner.invoke(small, ["config"])
    assert result.exit_code == 2 and result.output.strip() == "error: bad value"
    assert runner.invoke(small, ["diverged"]).exit_code == 3
    assert isinstance(runner.invoke(small, ["bug"]).exception, KeyError)
    assert go.__doc__ == "A command that fails as told." and go.__name__ == "go"  # typer's help and name survive
    assert runner.invoke(app, ["eval", "no-such-run"]).exit_code == 2  # the real commands carry it


def test_cpu_tensors_get_huge_pages_where_the_kernel_has_them_unless_the_user_chose(monkeypatch):
    """cli.huge_pages_for_tensors: set before torch's first allocation; a user's own setting is kept."""
    import os
    from pathlib import Path

    from align.cli import huge_pages_for_tensors

    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    huge_pages_for_tensors()
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    assert os.environ.get("THP_MEM_ALLOC_ENABLE") == ("1" if thp.exists() and "[never]" not in thp.read_text() else None)
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "0")
    huge_pages_for_tensors()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "0"


def test_the_cli_module_does_not_import_torch():
    """torch reads THP_MEM_ALLOC_ENABLE at its first allocation: main() must run before torch is imported."""
    import subprocess
    import sys

    code = "import sys, align.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
