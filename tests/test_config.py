"""Every option of every stage is checked when its config is made, before anything loads or trains: on the
command line, in recipes, in `align recipe validate` and in `align run`'s plan. No model is loaded here."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from align import config, data, pipeline, runs, train
from align.cli import app
from align.errors import ConfigError, DataError

from test_ppo import PROMPTS
from test_sft import qa_rows

runner = CliRunner()

# (stage, option, bad value, what the error says); each was accepted before (or failed only after loading a model)
BAD = [
    ("sft", "learning_rate", -5.0, "learning_rate must be > 0, got -5.0"),
    ("sft", "batch_size", 0, "batch_size must be >= 1, got 0"),
    ("sft", "lora_r", 0, "lora_r must be >= 1, got 0"),
    ("sft", "max_length", 0, "max_length must be >= 1, got 0"),
    ("sft", "epochs", -1.0, "epochs must be > 0, got -1.0"),
    ("sft", "epochs", 0.0, "epochs must be > 0, got 0.0"),
    ("sft", "max_steps", 0, "max_steps must be -1 or >= 1, got 0"),
    ("sft", "lr_scheduler", "cosin", "unknown lr_scheduler 'cosin' (did you mean 'cosine'? one of: linear, cosine"),
    ("sft", "dtype", "fp64", "unknown dtype 'fp64' (did you mean 'fp16'? one of: auto, bf16, fp16, fp32)"),
    ("sft", "warmup_ratio", 1.0, "warmup_ratio must be in [0, 1), got 1.0"),
    ("sft", "learning_rate", float("nan"), "learning_rate must be > 0, got nan"),
    ("rm", "truncation", "middle", "truncation must be 'left' or 'drop', got 'middle'"),
    ("rm", "lora_dropout", 1.0, "lora_dropout must be in [0, 1), got 1.0"),
    ("dpo", "beta", -1.0, "beta must be > 0, got -1.0"),
    ("dpo", "loss_type", "dpo", "unknown loss_type 'dpo'"),
    ("dpo", "label_smoothing", 0.5, "label_smoothing must be in [0, 0.5), got 0.5"),
    ("ppo", "steps", 0, "steps must be >= 1, got 0"),
    ("ppo", "mini_batch_size", 0, "mini_batch_size must be >= 1, got 0"),
    ("ppo", "kl_estimator", "k9", "unknown kl_estimator 'k9' (one of: k1, k2, k3)"),
    ("ppo", "top_p", 0.0, "top_p must be in (0, 1], got 0.0"),
    ("ppo", "gamma", 1.5, "gamma must be in [0, 1], got 1.5"),
    ("ppo", "temperature", 0.0, "temperature must be > 0, got 0.0"),
    ("ppo", "lr_scheduler", "reduce_lr_on_plateau", "unknown lr_scheduler 'reduce_lr_on_plateau'"),
]


def flag(key: str, value) -> list[str]:
    return [f"--{key.replace('_', '-')}", str(value)]


@pytest.mark.parametrize("stage, key, value, message", BAD)
def test_a_bad_value_is_refused_with_its_key_and_range(stage, key, value, message):
    with pytest.raises(ConfigError) as e:
        config.build(config.STAGES[stage], flags={key: value}, source=f"align {stage}")
    assert str(e.value).startswith(f"align {stage}: {message}"), str(e.value)
    with pytest.raises(ConfigError, match=key):  # made directly, too: the check lives with the option
        config.STAGES[stage](**{key: value})


@pytest.mark.parametrize("stage, key, value, message", [b for b in BAD if b[1] != "learning_rate" or b[2] == -5.0])
def test_cli_exits_2_naming_the_stage_before_any_model_loads(stage, key, value, message, tmp_path):
    inputs = ["--prompts", "p.jsonl"] if stage == "ppo" else ["--data", "x.jsonl"]
    result = runner.invoke(app, [stage, "--model", str(tmp_path / "no-such-model"), *inputs,
                                 "--output", str(tmp_path / "o"), *flag(key, value)])
    assert result.exit_code == 2, result.output
    assert f"error: align {stage}: {message}" in result.output and "cannot load" not in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("cls, values, message", [
    (config.PPOConfig, dict(rollout_batch_size=4, mini_batch_size=8), "need micro_batch_size <= mini_batch_size <= "
                                                                      "rollout_batch_size, got 8, 8, 4"),
    (config.PPOConfig, dict(micro_batch_size=16, mini_batch_size=8), "need micro_batch_size <= mini_batch_size"),
    (config.PPOConfig, dict(full=True), "full fine-tuning is not supported"),
    (config.DPOConfig, dict(loss_type="ipo", label_smoothing=0.1), "label_smoothing has no effect with loss_type 'ipo'"),
    (config.DPOConfig, dict(loss_type="exo_pair"), "loss_type exo_pair needs label_smoothing > 0"),
    (config.DPOConfig, dict(max_prompt_length=1024, max_length=1024), "max_prompt_length (1024) must be between 1"),
    (config.DPOConfig, dict(judge="runs/rm", full=True, eval_data=["e.jsonl"]), "full fine-tuning has no adapter"),
    (config.DPOConfig, dict(judge="runs/rm"), "give eval_data too"),
    (config.SFTConfig, dict(model="m", from_run="runs/sft"), "give model or from, not both"),
    (config.SFTConfig, dict(resume=True, overwrite=True), "give resume or overwrite, not both"),
])
def test_rules_between_options(cls, values, message):
    with pytest.raises(ConfigError) as e:
        config.build(cls, flags=values, source="here")
    assert str(e.value).startswith("here: ") and message in str(e.value), str(e.value)


def test_good_values_and_defaults_pass():
    for cls in config.STAGES.values():
        cls()  # every default is valid
    cfg = config.build(config.SFTConfig, flags=dict(max_steps=-1, epochs=0.5, warmup_ratio=0.0, micro_batch_tokens=-1,
                                                    max_grad_norm=0.0, save_steps=0, lr_scheduler="linear"))
    assert cfg.max_steps == -1 and cfg.epochs == 0.5
    config.build(config.PPOConfig, flags=dict(rollout_batch_size=8, mini_batch_size=8, micro_batch_size=2, top_p=1.0))
    config.build(config.DPOConfig, flags=dict(loss_type="robust", label_smoothing=0.1, max_prompt_length=1023))


def test_schedulers_are_transformers_names_that_run_without_extra_arguments():
    import torch
    from transformers import get_scheduler
    from transformers.trainer_utils import SchedulerType

    names = {s.value for s in SchedulerType}
    for name in config.SCHEDULERS:
        assert name in names
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = get_scheduler(name, opt, num_warmup_steps=1, num_training_steps=4)
        opt.step()
        sched.step()  # no metric, no scheduler_specific_kwargs


def test_dpo_losses_have_one_home():
    from align import dpo

    assert not hasattr(dpo, "LOSSES") and not hasattr(dpo, "SMOOTHED_LOSSES")  # config.py only, no second name
    assert set(config.DPO_SMOOTHED_LOSSES) <= set(config.DPO_LOSSES)


def test_help_shows_each_option_s_allowed_values_and_default():
    out = CliRunner().invoke(app, ["ppo", "--help"], env={"COLUMNS": "400"}).output
    for text in ("[must be >= 1; default: 100]", "[one of: k1, k2, k3; default: k1]", "[must be in (0, 1]; default: 1.0]"):
        assert text in out, text
    out = CliRunner().invoke(app, ["dpo", "--help"], env={"COLUMNS": "400"}).output
    assert "[must be -1 or >= 1; default: -1]" in out and "one of: sigmoid, hinge, ipo" in out


# --- recipes: `align recipe validate` and `align run` check every stage before the first one runs ---------

def pipeline_recipe(tmp_path, sft=None, rl=None, **top) -> str:
    """A two-stage recipe (sft -> ppo) with these settings changed; a value "DROP" removes the key."""
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in qa_rows(1)))
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in PROMPTS))
    recipe = {"output": str(tmp_path / "runs"), "stages": {
        "sft": {"model": str(tmp_path / "no-model-needed"), "data": str(tmp_path / "qa.jsonl"), "max_steps": 2,
                **(sft or {})},
        "rl": {"stage": "ppo", "from": "sft", "reward": "rewards:share_of_a", "prompts": str(tmp_path / "prompts.jsonl"),
               "steps": 2, "rollout_batch_size": 4, "mini_batch_size": 4, "micro_batch_size": 4, **(rl or {})},
    }, **top}
    recipe["stages"] = {n: {k: v for k, v in s.items() if v != "DROP"} for n, s in recipe["stages"].items()}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return str(path)


@pytest.mark.parametrize("rl, message", [
    ({"steps": 0}, "stages.rl: steps must be >= 1, got 0"),
    ({"mini_batch_size": 0}, "stages.rl: mini_batch_size must be >= 1, got 0"),
    ({"kl_estimator": "k9"}, "stages.rl: unknown kl_estimator 'k9'"),
    ({"from": "sfft"}, "stages.rl: 'from: sfft' is neither an earlier stage nor an existing run directory "
                       "(did you mean 'sft'?)"),
    ({"reward": "rn"}, "stages.rl: 'reward: rn' is neither an earlier stage nor an existing run directory"),
    ({"rollout_batch_size": 32, "mini_batch_size": 4}, "stages.rl: rollout_batch_size (32) exceeds the 16 prompts of"),
    ({"prompts": "DROP"}, "stages.rl: 'prompts' is required for a ppo stage"),
    ({"reward": "DROP"}, "stages.rl: 'reward' is required for a ppo stage"),
    ({"full": True}, "stages.rl: PPO trains LoRA adapters on one shared base"),
])
def test_recipe_validate_and_run_check_the_last_stage_before_the_first_trains(tmp_path, rl, message, monkeypatch):
    recipe = pipeline_recipe(tmp_path, rl=rl)
    result = runner.invoke(app, ["recipe", "validate", recipe])
    assert result.exit_code == 2 and f"error: {recipe}: {message}" in result.output, result.output
    ran = []
    monkeypatch.setattr(pipeline, "run_stage", lambda method, cfg: ran.append(method))
    result = runner.invoke(app, ["run", recipe])
    assert result.exit_code == 2 and message in result.output, result.output
    assert ran == [] and not (tmp_path / "runs").exists()  # the sft stage did not train first


@pytest.mark.parametrize("stages, message", [
    ({"sft": ["model", "x"]}, "stages.sft: a stage's settings are a mapping of keys to values, got list"),
    ({"sft": {"stage": ["sft"]}}, "stages.sft: unknown stage"),
    ({"sft": {"data": "DATA"}}, "stages.sft: no model: give 'model'"),
    ({"sft": {"model": "m"}}, "stages.sft: 'data' is required for a sft stage"),
    ({"sft": {"model": "m", "data": "DATA", "lr_scheduler": "fancy"}}, "stages.sft: unknown lr_scheduler 'fancy'"),
])
def test_recipe_shapes_and_required_inputs(tmp_path, stages, message):
    (tmp_path / "qa.jsonl").write_text(json.dumps(qa_rows(1)[0]) + "\n")
    text = yaml.safe_dump({"output": str(tmp_path / "runs"), "stages": stages}).replace("DATA", str(tmp_path / "qa.jsonl"))
    (tmp_path / "p.yaml").write_text(text)
    result = runner.invoke(app, ["recipe", "validate", str(tmp_path / "p.yaml")])
    assert result.exit_code == 2 and message in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback


def test_single_stage_recipe_validate_checks_values_and_prompt_rows(tmp_path):
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in PROMPTS[:3]))
    (tmp_path / "r.yaml").write_text(f"prompts: {tmp_path / 'prompts.jsonl'}\nrollout_batch_size: 4\nmini_batch_size: 4\n"
                                     "micro_batch_size: 4\n")
    result = runner.invoke(app, ["recipe", "validate", str(tmp_path / "r.yaml"), "--stage", "ppo"])
    assert result.exit_code == 2 and "rollout_batch_size (4) exceeds the 3 prompts" in result.output, result.output
    (tmp_path / "s.yaml").write_text("lora_r: 0\n")
    result = runner.invoke(app, ["recipe", "validate", str(tmp_path / "s.yaml"), "--stage", "sft"])
    assert result.exit_code == 2 and "(stage sft): lora_r must be >= 1, got 0" in result.output, result.output


def test_a_comparison_file_is_not_a_prompt_file(tmp_path, jsonl):
    pairs = jsonl("pairs.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}])
    with pytest.raises(DataError) as e:
        data.load_prompts(pairs)
    assert str(e.value).startswith(f"{pairs}, row 1, field 'chosen': a comparison row")
    ranked = jsonl("ranked.jsonl", [{"prompt": "p"}, {"prompt": "q", "responses": ["a", "b"]}])
    with pytest.raises(DataError, match="row 2, field 'responses': a comparison row"):
        data.load_prompts(ranked)
    recipe = pipeline_recipe(tmp_path, rl={"prompts": pairs, "rollout_batch_size": 1, "mini_batch_size": 1,
                                           "micro_batch_size": 1})
    result = runner.invoke(app, ["recipe", "validate", recipe])
    assert result.exit_code == 2 and f"{pairs}, row 1, field 'chosen': a comparison row" in result.output


def test_long_ppo_prompts_are_counted(tiny_model):
    from align import chat, models

    tok = models.load_tokenizer(tiny_model)
    prompts = [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "the cat sat " * 20}]]
    short = len(tok(chat.prompt_text(tok, prompts[0]), add_special_tokens=False)["input_ids"])
    assert chat.count_long_prompts(tok, prompts, short) == 1
    assert chat.count_long_prompts(tok, prompts, 1000) == 0 and chat.count_long_prompts(tok, prompts, 1) == 2


# --- no stage changes the config it is given ----------------------------------------------------------------

def test_the_pipeline_does_not_mutate_its_configs_and_reruns_a_failed_stage(tmp_path, monkeypatch):
    recipe = pipeline_recipe(tmp_path)
    _, planned = pipeline.plan(config.read_recipe(recipe), recipe)
    seen = []
    monkeypatch.setattr(pipeline, "plan", lambda r, s: (tmp_path / "runs", planned))
    monkeypatch.setattr(pipeline, "run_stage", lambda method, cfg: seen.append(cfg))
    failed = tmp_path / "runs" / "sft"
    failed.mkdir(parents=True)
    (failed / runs.MANIFEST).write_text(json.dumps({"stage": "sft", "status": runs.FAILED}))
    pipeline.run_pipeline(recipe)
    assert [(c.resume, c.overwrite) for c in seen] == [(False, True), (False, False)]  # failed: again, from the start
    assert all(not c.resume and not c.overwrite for _, _, c in planned)  # the plan's configs are untouched
    assert all(a is not c for a, (_, _, c) in zip(seen, planned))


def test_ppo_does_not_mutate_its_config(tmp_path, monkeypatch):
    from align import ppo

    class Stop(Exception):
        pass

    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in PROMPTS))
    cfg = config.build(config.PPOConfig, flags=dict(model="m", prompts=[str(tmp_path / "p.jsonl")], reward="x:y",
                                                    output=str(tmp_path / "o"), lora_dropout=0.05))
    def stop(c):
        raise Stop(c.lora_dropout)

    monkeypatch.setattr(ppo.models, "tokenizer_for", stop)
    with pytest.raises(Stop) as e:
        ppo.run(cfg)
    assert e.value.args == (0.0,) and cfg.lora_dropout == 0.05  # PPO runs without dropout, on its own copy


# --- warm-up ------------------------------------------------------------------------------------------------

def test_warm_up_is_floor_of_ratio_times_steps(tmp_path, monkeypatch):
    from transformers import TrainingArguments

    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))  # trainer_args sets it when unset
    assert [train.warmup_steps(0.03, n) for n in (1, 10, 33, 34, 100)] == [0, 0, 0, 1, 3]
    assert train.warmup_steps(0.3, 10) == 3 and train.warmup_steps(0.0, 1000) == 0
    cfg = config.build(config.SFTConfig, flags=dict(max_steps=1))
    args = train.trainer_args(cfg, runs.Run(tmp_path, "sft"), TrainingArguments)
    assert args.get_warmup_steps(1) == 0 and args.get_warmup_steps(100) == 3  # transformers' own: ceil -> 1, 3
    import pickle

    assert pickle.loads(pickle.dumps(args)).get_warmup_steps(1) == 0  # checkpoints save the arguments


@pytest.mark.parametrize("flags, speedup, expected", [(True, 7.0, "bf16"), (True, 0.55, "fp32"), (False, 7.0, "fp32")])
def test_auto_dtype_is_bf16_only_where_bf16_matmuls_measure_faster(monkeypatch, flags, speedup, expected):
    """A CPU that reports AVX512-BF16 but runs bf16 matmuls at 0.55x fp32 (an Intel VM without AMX) gets fp32."""
    from align import models

    monkeypatch.delenv("ALIGN_DTYPE", raising=False)
    monkeypatch.setattr(models.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(models, "native_bf16_cpu", lambda: flags)
    monkeypatch.setattr(models, "cpu_bf16_speedup", lambda: speedup)
    assert models.dtype_name("auto") == expected and models.dtype_name("bf16") == "bf16"
    monkeypatch.setenv("ALIGN_DTYPE", "fp32")
    assert models.dtype_name("auto") == "fp32"


def test_the_bf16_probe_is_measured_once_per_cpu_and_kept(monkeypatch):
    """Every rank of a run and its --resume read the same ratio: measured once, then read from the cache."""
    from align import models

    assert 0 < models.measure_bf16_speedup(n=256, reps=2) < 50  # AVX2 without bf16 instructions: 0.01-0.04x
    measured = []
    monkeypatch.setattr(models, "measure_bf16_speedup", lambda: measured.append(1) or 2.5)
    models.cpu_bf16_speedup.cache_clear()
    assert models.cpu_bf16_speedup() == 2.5 and measured == [1]
    models.cpu_bf16_speedup.cache_clear()  # a new process
    monkeypatch.setattr(models, "measure_bf16_speedup", lambda: 0.5)
    assert models.cpu_bf16_speedup() == 2.5
    models.cpu_bf16_speedup.cache_clear()


def test_the_lm_head_gets_a_contiguous_input_and_the_same_logits(tiny_model):
    """generate's prefill and align eval hand the head a strided slice (logits_to_keep), which torch multiplies by
    expanding the head weight per row; load_base makes the slice contiguous first: same logits."""
    import torch

    from align import models

    model = models.load_base(tiny_model, dtype="fp32")
    seen = []
    model.get_output_embeddings().register_forward_pre_hook(lambda _m, args: seen.append(args[0].is_contiguous()))
    ids = torch.randint(0, 100, (3, 9))
    with torch.no_grad():
        full = model(input_ids=ids).logits
        last = model(input_ids=ids, logits_to_keep=4).logits
    torch.testing.assert_close(last, full[:, -4:])
    assert seen == [True, True]
