"""PPO end to end on the tiny model: the reference is the SFT model, reward rises, KL restrains it, resume is exact."""

from __future__ import annotations

import json

import pytest
import torch

from align import config, models, ppo, ppo_math, sft
from align.actor_critic import POLICY

from test_sft import qa_rows

PROMPTS = [{"prompt": f"tell me about {w}"} for w in
           "the cat dog sky sea grass apple banana model policy reward one two three four five".split()]


def ppo_cfg(out, prompts, **kw) -> config.PPOConfig:
    base = dict(prompts=[prompts], output=str(out), reward="rewards:share_of_a", steps=40, rollout_batch_size=8,
                mini_batch_size=4, micro_batch_size=4, ppo_epochs=4, max_new_tokens=12, learning_rate=3e-3,
                value_learning_rate=3e-3, kl_coef=0.01, lora_r=8, lora_alpha=16, save_steps=0, sample_steps=0,
                whiten_rewards=True, missing_eos_penalty=0.0)
    base.update(kw)
    return config.build(config.PPOConfig, flags=base)


@pytest.fixture(scope="module")
def sft_run(tiny_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ppo_sft")
    (tmp / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in qa_rows()))
    sft.run(config.build(config.SFTConfig, flags=dict(model=tiny_model, data=[str(tmp / "qa.jsonl")],
                                                      output=str(tmp / "sft"), max_steps=20, learning_rate=5e-3,
                                                      lora_r=8, lora_alpha=16)))
    return str(tmp / "sft")


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in PROMPTS))
    return str(p)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_reference_is_the_sft_model_before_any_update(sft_run, prompts_file, tmp_path, dtype):
    cfg = ppo_cfg(tmp_path / "x", prompts_file, from_run=sft_run, dtype=dtype)
    lineage, tok = models.tokenizer_for(cfg)
    ac, scorer, _, _ = ppo.build(cfg, lineage, tok)
    prompts = [[{"role": "user", "content": p["prompt"]}] for p in PROMPTS[:6]]
    ro = ppo.rollout(ac, tok, prompts, cfg)
    labels = ro.batch["input_ids"][:, ro.batch["start"]:]
    with torch.no_grad():
        policy = ac.logprobs(ro.batch, POLICY, 1.0)
        ref = ac.logprobs(ro.batch, None, 1.0)
    kl = ppo_math.kl_penalty(policy, ref, "k1") * ro.mask
    assert float(kl.abs().max()) < 1e-5  # bf16 too: a fresh adapter adds exact zeros
    if dtype != "fp32":
        return
    # and the reference is the SFT model, not the bare base: the SFT run's merged model gives the same log-probs
    sft_model, _, _ = models.load_run(sft_run, dtype="fp32")
    with torch.no_grad():
        logits = sft_model(input_ids=ro.batch["input_ids"], attention_mask=ro.batch["attention_mask"],
                           position_ids=ro.batch["position_ids"]).logits[:, ro.batch["start"] - 1: -1]
    direct = ppo_math.logprobs_from_logits(logits.float(), labels)
    torch.testing.assert_close(direct * ro.mask, ref * ro.mask, rtol=1e-4, atol=1e-4)


def mean(xs):
    return sum(xs) / len(xs)


def rewards_of(run_dir) -> list[float]:
    return [json.loads(x)["reward/raw"] for x in (run_dir / "logs.jsonl").read_text().splitlines()]


def test_a_micro_batch_runs_without_the_columns_that_are_padding_in_all_its_rows(tiny_model, prompts_file, tmp_path):
    cfg = ppo_cfg(tmp_path / "x", prompts_file, model=tiny_model, dtype="fp32")
    lineage, tok = models.tokenizer_for(cfg)
    ac = ppo.build(cfg, lineage, tok)[0]
    prompts = [[{"role": "user", "content": p}] for p in ["cat", "tell me about the sea and the sky and the grass",
                                                          "dog", "one two"]]
    ro = ppo.rollout(ac, tok, prompts, cfg)
    batch, mask = dict(ro.batch), ro.mask.clone()
    start = batch["start"]
    for row, keep in ((0, 1), (2, 2)):  # answers that ended early
        mask[row, keep:] = 0
        batch["attention_mask"] = batch["attention_mask"].clone()
        batch["attention_mask"][row, start + keep:] = 0
    idx = torch.tensor([0, 2])  # short prompts: left padding common to both; answers of at most 1 and 2 tokens
    cut, answer = ppo.rows(batch, mask, idx)
    assert cut["start"] < start and answer == int(mask[idx].sum(-1).max()) <= 2 < mask.shape[1]
    assert cut["attention_mask"].sum() == batch["attention_mask"][idx].sum()  # only padding went
    full = {k: (v[idx] if torch.is_tensor(v) else v) for k, v in batch.items()}
    with torch.no_grad():
        ac.value_head.weight.normal_()
        lp_cut, _, v_cut = ac.act(cut, 1.0)
        lp_full, _, v_full = ac.act(full, 1.0)
    real = mask[idx, :answer].bool()
    torch.testing.assert_close(lp_cut[real], lp_full[:, :answer][real], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(v_cut[real], v_full[:, :answer][real], rtol=1e-5, atol=1e-5)


def test_reward_rises_and_a_large_kl_coefficient_holds_it_back(tiny_model, prompts_file, tmp_path):
    # fp32: this pins the algorithm on one seed. In bf16 on an AVX512-BF16 CPU seed 42 did not climb within 40
    # iterations while seeds 1, 2, 3 did (first 5 -> last 5: 0.05 -> 0.37, 0.23, 0.33): a seed's luck, not a bug
    free = ppo.run(ppo_cfg(tmp_path / "free", prompts_file, model=tiny_model, dtype="fp32"))
    r = rewards_of(tmp_path / "free")
    assert mean(r[-5:]) > mean(r[:5]) + 0.05, r
    assert all(torch.isfinite(torch.tensor(json.loads(x)["kl"])) for x in
               (tmp_path / "free" / "logs.jsonl").read_text().splitlines())
    held = ppo.run(ppo_cfg(tmp_path / "held", prompts_file, model=tiny_model, kl_coef=1.0, dtype="fp32"))
    h = rewards_of(tmp_path / "held")
    assert mean(h[-5:]) - mean(h[:5]) < mean(r[-5:]) - mean(r[:5]), (h, r)
    assert free["metrics"]["kl_end"] > held["metrics"]["kl_end"]
    # the final policy is a normal adapter: it reloads and generates
    model, tok, manifest = models.load_run(str(tmp_path / "free"))
    assert manifest["stage"] == "ppo" and (tmp_path / "free" / "adapter" / "adapter_model.safetensors").exists()


def test_a_value_head_on_the_policy_shares_its_forward_and_learns(tiny_model, prompts_file, tmp_path):
    cfg = ppo_cfg(tmp_path / "shared", prompts_file, model=tiny_model, dtype="fp32", value_model="policy")
    lineage, tok = models.tokenizer_for(cfg)
    ac = ppo.build(cfg, lineage, tok)[0]
    assert not any(".value." in n for n, _ in ac.model.named_parameters())  # no value adapter: the head alone
    assert ac.value_params == list(ac.value_head.parameters())
    ro = ppo.rollout(ac, tok, [[{"role": "user", "content": p["prompt"]}] for p in PROMPTS[:4]], cfg)
    with torch.no_grad():
        ac.value_head.weight.normal_()
        logprobs, _, values = ac.act(ro.batch, 1.0)
        h = ac.hidden(ro.batch, POLICY)[:, ro.batch["start"] - 1: -1]
        torch.testing.assert_close(values, ac.value_head(h.float()).squeeze(-1))
        torch.testing.assert_close(logprobs, ac.logprobs(ro.batch, POLICY, 1.0))
    result = ppo.run(cfg)
    r = rewards_of(tmp_path / "shared")
    assert mean(r[-5:]) > mean(r[:5]) + 0.05, r
    assert result["metrics"]["kl_end"] > 0
    from safetensors.torch import load_file
    assert list(load_file(str(tmp_path / "shared" / "value" / "value.safetensors"))) == ["value_head.weight"]


@pytest.mark.parametrize("value_model", ["adapter", "policy"])
def test_resume_reproduces_the_next_steps(tiny_model, prompts_file, tmp_path, monkeypatch, value_model):
    kw = dict(model=tiny_model, steps=4, save_steps=2, value_model=value_model)
    ppo.run(ppo_cfg(tmp_path / "straight", prompts_file, **kw))

    class Crash(Exception):
        pass

    real = ppo.PPOTrainer.train_step

    def crash_at_3(self, step):
        metrics = real(self, step)
        if step == 3:
            raise Crash()
        return metrics

    monkeypatch.setattr(ppo.PPOTrainer, "train_step", crash_at_3)
    with pytest.raises(Crash):
        ppo.run(ppo_cfg(tmp_path / "resumed", prompts_file, **kw))
    monkeypatch.setattr(ppo.PPOTrainer, "train_step", real)
    ppo.run(ppo_cfg(tmp_path / "resumed", prompts_file, resume=True, **kw))
    a = [json.loads(x) for x in (tmp_path / "straight" / "logs.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "resumed" / "logs.jsonl").read_text().splitlines()]
    assert [x["step"] for x in b] == [1, 2, 3, 4]
    for x, y in zip(a, b):
        for key in ("reward/raw", "kl", "policy_loss", "value_loss", "response_length"):
            assert x[key] == pytest.approx(y[key], rel=1e-5, abs=1e-6), (key, x["step"])


def test_reward_model_run_shares_the_base_and_scores_like_align_score(sft_run, prompts_file, tmp_path):
    from align import reward_model, rm, runs

    from test_rm import preference_pairs

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in preference_pairs(48, 0)))
    rm.run(config.build(config.RMConfig, flags=dict(from_run=sft_run, data=[str(pairs)], output=str(tmp_path / "rm"),
                                                    max_steps=4, lora_r=8, lora_alpha=16)))
    cfg = ppo_cfg(tmp_path / "ppo", prompts_file, from_run=sft_run, reward=str(tmp_path / "rm"), steps=2,
                  whiten_rewards=False, dtype="fp32")  # fp32: the same scores to 1e-4 (bf16 heads round differently)
    lineage, tok = models.tokenizer_for(cfg)
    ac, scorer, norm, info = ppo.build(cfg, lineage, tok)
    assert info["reward_shares_base"] and norm["std"] > 0
    prompts = [[{"role": "user", "content": p["prompt"]}] for p in PROMPTS[:5]]
    responses = ["banana red", "the cat", "blue sky and sea", "one two three", "hello"]
    shared = scorer(prompts, responses)
    standalone = reward_model.load_reward_model(str(tmp_path / "rm"), dtype="fp32").score(prompts, responses)
    torch.testing.assert_close(shared, torch.tensor(standalone), rtol=1e-4, atol=1e-4)
    # the value model starts as the reward model: same adapter weights, same head
    assert torch.equal(ac.value_head.weight.detach(), ac.reward_head.weight.detach())
    manifest = ppo.run(cfg)  # and a short PPO run with it completes
    assert manifest["metrics"]["reward_shares_base"] is True
    assert manifest["reward_model"] == {"weights": str((tmp_path / "rm" / "adapter").resolve()),
                                        "sha256": runs.fingerprint(tmp_path / "rm" / "adapter")}


def test_a_reward_model_with_another_chat_template_is_refused(tiny_model, tiny_base_model, prompts_file, tmp_path):
    from align import rm, runs

    from test_rm import preference_pairs

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in preference_pairs(16, 0)))
    rm.run(config.build(config.RMConfig, flags=dict(model=tiny_base_model, data=[str(pairs)],
                                                    output=str(tmp_path / "rm"), max_steps=2)))
    cfg = ppo_cfg(tmp_path / "ppo", prompts_file, model=tiny_model, reward=str(tmp_path / "rm"))
    lineage, tok = models.tokenizer_for(cfg)
    with pytest.raises(runs.RunError, match="template hash differs"):
        ppo.build(cfg, lineage, tok)
    with pytest.raises(runs.RunError, match="template hash differs"):
        ppo.run(cfg)
    assert not (tmp_path / "ppo").exists()  # refused before anything was written
