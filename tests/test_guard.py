"""A run that diverges stops, says at which step and what to change, and its manifest says failed; a healthy
run is never stopped. The rules (align/guard.py) on crafted values, then the tiny model end to end."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from align import config, guard, ppo, runs, sft, train
from align.cli import app
from align.errors import TrainingDiverged

from test_ppo import PROMPTS
from test_sft import qa_rows, sft_cfg

runner = CliRunner()
NAN, INF = float("nan"), float("inf")


# --- the Trainer stages' rules ------------------------------------------------------------------------------

@pytest.mark.parametrize("loss, grad, first, zero_since, start, message", [
    (NAN, 1.0, 7.0, None, 5, "training diverged at step 9: loss not finite"),
    (7.0, INF, 7.0, None, 5, "training diverged at step 9: grad_norm not finite"),
    (5.99, 0.0, 7.0, 5, 5, "training diverged at step 5: the gradients are exactly zero from there on while the loss "
                           "is 5.99"),
    (30.0, 2.0, 7.0, None, 5, "training diverged at step 9: the loss rose from 7 to 30"),
])
def test_a_diverged_log_stops_the_run_naming_the_step(loss, grad, first, zero_since, start, message):
    with pytest.raises(TrainingDiverged) as e:
        guard.check_log(9, loss, grad, first, zero_since, start, learning_rate=1000.0)
    assert str(e.value).startswith(message), str(e.value)
    assert "Lower --learning-rate (now 1000)" in str(e.value) and e.value.exit_code == 3


@pytest.mark.parametrize("loss, grad, first, zero_since, start", [
    (0.2, 0.3, 7.0, None, 5),  # learning
    (7.5, 3.0, 7.0, None, 5),  # noisy, not exploding
    (0.69, 0.0, 0.69, 7, 5),  # zero gradients since mid-interval only: decided at the next log
    (0.0, 0.0, 1.0, 5, 5),  # a hinge loss whose pairs all clear the margin: zero loss, zero gradient
    (2.0, 1.0, None, None, 1),  # the first log
    (0.5, None, 0.1, None, 5),  # no grad norm logged; 0.5 < 3 x 0.1 + 2
])
def test_healthy_logs_pass(loss, grad, first, zero_since, start):
    guard.check_log(9, loss, grad, first, zero_since, start)


def model_with_grads(*grads: float) -> torch.nn.Module:
    model = torch.nn.Linear(len(grads), 1, bias=False)
    model.weight.grad = torch.tensor([list(grads)])
    return model


def test_the_callback_checks_every_step_s_gradients_before_they_are_applied():
    cb, args = train.DivergenceGuard(), SimpleNamespace(fp16=False, learning_rate=1e3)
    state = SimpleNamespace(global_step=0)
    cb.on_train_begin(args, state, None)
    assert guard.grad_norm(model_with_grads(3.0, 4.0)) == 5.0
    cb.on_pre_optimizer_step(args, state, None, model=model_with_grads(1.0, 2.0))
    assert cb.zero_since is None
    for step in (1, 2):  # the optimiser steps 2 and 3 get zero gradients: remembered from step 2
        state.global_step = step
        cb.on_pre_optimizer_step(args, state, None, model=model_with_grads(0.0, 0.0))
    assert cb.zero_since == 2
    cb.on_pre_optimizer_step(args, state, None, model=model_with_grads(0.0, 1e-3))
    assert cb.zero_since is None
    state.global_step = 3
    with pytest.raises(TrainingDiverged, match="at step 4: the gradients are not finite"):
        cb.on_pre_optimizer_step(args, state, None, model=model_with_grads(NAN, 1.0))


def test_the_callback_stops_when_a_whole_logging_interval_had_zero_gradients():
    cb, args = train.DivergenceGuard(), SimpleNamespace(fp16=False, learning_rate=1e3)
    state = SimpleNamespace(global_step=0)
    cb.on_train_begin(args, state, None)
    for step in range(4):
        state.global_step = step
        cb.on_pre_optimizer_step(args, state, None, model=model_with_grads(*((1.0,) if step < 2 else (0.0,))))
    state.global_step = 4
    cb.on_log(args, state, None, logs={"loss": 6.0, "grad_norm": 0.0})  # steps 1-4: zero from step 3 only
    for step in range(4, 8):
        state.global_step = step
        cb.on_pre_optimizer_step(args, state, None, model=model_with_grads(0.0))
    state.global_step = 8
    with pytest.raises(TrainingDiverged, match="at step 3: the gradients are exactly zero"):
        cb.on_log(args, state, None, logs={"loss": 6.0, "grad_norm": 0.0})


def test_under_fp16_the_loss_scaler_may_skip_overflowing_steps():
    cb, args = train.DivergenceGuard(), SimpleNamespace(fp16=True, learning_rate=1e-4)
    state = SimpleNamespace(global_step=0)
    for _ in range(guard.FP16_SKIPS):
        cb.on_pre_optimizer_step(args, state, None, model=model_with_grads(INF))
    cb.on_pre_optimizer_step(args, state, None, model=model_with_grads(1.0))  # the scale came down: fine
    cb.on_log(args, state, None, logs={"loss": 2.0, "grad_norm": INF})
    with pytest.raises(TrainingDiverged):
        for _ in range(guard.FP16_SKIPS + 1):
            cb.on_pre_optimizer_step(args, state, None, model=model_with_grads(NAN))


# --- PPO's rules ----------------------------------------------------------------------------------------------

def rollout_tensors(**changes):
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    t = {"score": torch.tensor([0.5, -0.2]), "logprobs": torch.full((2, 3), -1.0), "values": torch.zeros(2, 3),
         "advantages": torch.tensor([[0.3, -0.1, 0.0], [1.0, 0.2, -0.4]]), "returns": torch.ones(2, 3),
         "kl": torch.full((2, 3), 0.05)}
    t.update(changes)
    return mask, t


def test_ppo_rollout_checks():
    cfg = config.PPOConfig()
    mask, t = rollout_tensors()
    guard.check_rollout(3, cfg, mask, t.pop("kl"), **t)  # healthy
    mask, t = rollout_tensors(values=torch.tensor([[0.0, 1.0, NAN], [0.0, 0.0, 0.0]]))
    guard.check_rollout(3, cfg, mask, t.pop("kl"), **t)  # NaN at padding only: means nothing
    mask, t = rollout_tensors(advantages=torch.tensor([[0.3, NAN, 0.0], [1.0, 0.2, -0.4]]))
    with pytest.raises(TrainingDiverged, match=r"at PPO iteration 3: advantages not finite .* Lower --learning-rate "
                                               r"\(now 0.0001\)"):
        guard.check_rollout(3, cfg, mask, t.pop("kl"), **t)
    mask, t = rollout_tensors(score=torch.tensor([INF, 0.0]))
    with pytest.raises(TrainingDiverged, match="score not finite"):
        guard.check_rollout(3, cfg, mask, t.pop("kl"), **t)
    mask, t = rollout_tensors(kl=torch.full((2, 3), 12.0))
    with pytest.raises(TrainingDiverged, match="the KL to the reference ran away: 12 nats per response token"):
        guard.check_rollout(7, cfg, mask, t.pop("kl"), **t)
    mask, t = rollout_tensors(kl=torch.full((2, 3), 9.0))
    guard.check_rollout(7, cfg, mask, t.pop("kl"), **t)  # far from the reference, but not running away


def test_ppo_update_checks():
    cfg = config.PPOConfig()
    healthy = {"policy_loss": -0.1, "value_loss": 0.04, "entropy": 4.7, "approx_kl": 0.11, "ratio": 1.09,
               "grad_norm": 1.1, "clipfrac": 0.2}
    guard.check_update(2, cfg, healthy)
    guard.check_update(2, cfg, {**healthy, "grad_norm": 0.0, "value_loss": 0.0})  # nothing left to learn
    no_value_loss = config.PPOConfig(vf_coef=0.0)  # and advantages all 0 (a constant reward): no gradient at all
    guard.check_update(2, no_value_loss, {**healthy, "grad_norm": 0.0, "policy_loss": 0.0})
    for key in ("ratio", "approx_kl", "value_loss", "grad_norm"):
        with pytest.raises(TrainingDiverged, match=f"at PPO iteration 2: {key} not finite"):
            guard.check_update(2, cfg, {**healthy, key: NAN})
    with pytest.raises(TrainingDiverged, match="gradients are exactly zero while the value loss is 0.317"):
        guard.check_update(2, cfg, {**healthy, "grad_norm": 0.0, "value_loss": 0.317, "entropy": math.log(400)})


# --- end to end on the tiny model -----------------------------------------------------------------------------

def test_sft_at_a_huge_learning_rate_fails_naming_the_step(tiny_model, tmp_path, jsonl):
    data = jsonl("qa.jsonl", qa_rows(2))
    out = tmp_path / "run"
    result = runner.invoke(app, ["sft", "--model", tiny_model, "--data", data, "--output", str(out), "--max-steps", "30",
                                 "--learning-rate", "1e3", "--logging-steps", "1", "--lora-r", "8", "--batch-size", "4"])
    assert result.exit_code == 3, result.output
    assert "error: training diverged at step " in result.output and "Lower --learning-rate (now 1000)" in result.output
    manifest = runs.read_manifest(out)
    assert manifest["status"] == runs.FAILED and manifest["error"].startswith("training diverged at step")
    assert not (out / "adapter").exists()
    with pytest.raises(runs.RunError, match="not complete"):
        runs.read_manifest(out, require_complete=True)  # no later stage starts from it


def test_a_healthy_run_is_not_stopped_and_one_step_trains(tiny_model, tmp_path, jsonl):
    data = jsonl("qa.jsonl", qa_rows(1))
    m = sft.run(sft_cfg(tiny_model, data, tmp_path / "ok", max_steps=6, logging_steps=1))
    assert m["status"] == "complete" and m["metrics"]["loss_end"] < m["metrics"]["loss_start"]
    # one step with the default warm-up ratio: its learning rate is not 0, so the adapter moves
    sft.run(sft_cfg(tiny_model, data, tmp_path / "one", max_steps=1, warmup_ratio=0.03))
    from safetensors.torch import load_file

    weights = load_file(tmp_path / "one" / "adapter" / "adapter_model.safetensors")
    lora_b = [w for k, w in weights.items() if "lora_B" in k]
    assert lora_b and any(float(w.abs().max()) > 0 for w in lora_b)  # LoRA B starts at 0: it trained


def test_ppo_at_a_huge_learning_rate_fails_and_counts_long_prompts(tiny_model, tmp_path):
    from test_ppo import ppo_cfg

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in PROMPTS))
    cfg = ppo_cfg(tmp_path / "ppo", str(prompts), model=tiny_model, steps=6, rollout_batch_size=4, mini_batch_size=4,
                  micro_batch_size=4, ppo_epochs=1, max_new_tokens=4, learning_rate=1e3, value_learning_rate=1e3,
                  max_prompt_length=8)
    with pytest.raises(TrainingDiverged, match="at PPO iteration [1-5]:"):
        ppo.run(cfg)
    manifest = runs.read_manifest(tmp_path / "ppo")
    assert manifest["status"] == runs.FAILED
    assert manifest["data"]["counts"]["truncated_prompts"] == len(PROMPTS)  # every templated prompt is over 8 tokens
