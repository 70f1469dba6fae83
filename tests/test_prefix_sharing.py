"""Prefix sharing: rows that begin alike run their common prefix once, and every output (hidden states, scores,
log-probs, gradients, whole RM and DPO runs) equals the unshared computation to float rounding."""

from __future__ import annotations

import copy
import types

import pytest
import torch
from safetensors import safe_open

from align import attention, config, dpo, models, prefix_sharing, rm
from align.prefix_sharing import PrefixSharing, common_prefix, plan, supported
from align.reward_model import pad_right
from conftest import write_jsonl
from test_dpo import dpo_cfg
from test_dpo import tmp  # noqa: F401  (fixture: the DPO tests' SFT run and preference files)
from test_rm import _one_thread, preference_pairs, ranked_rows, rm_cfg  # noqa: F401  (_one_thread: autouse)

# a pair sharing a prompt, a ranking of 3, a response that is a prefix of its pair's other, a row alone
ROWS = [[5, 6, 7, 8, 9, 10], [5, 6, 7, 11, 12], [5, 6, 20, 21, 22, 23, 24], [5, 6, 25], [5, 6, 26, 27],
        [30, 31, 32], [30, 31, 32, 33], [40, 41, 42, 43, 44]]
GROUPS = [[0, 1], [2, 3, 4], [5, 6]]


def test_every_token_is_packed_once_per_prefix_at_its_own_position():
    rows, where = plan(ROWS, GROUPS)
    packed = [tok for row in rows for tok in row]
    assert len(packed) == sum(map(len, ROWS)) - (3 + 2 * 2 + 3) == 27  # each group's prefix once
    width = max(map(len, rows))
    flat = [row[i] if i < len(row) else None for row in rows for i in range(width)]
    at = iter(where)
    for r, ids in enumerate(ROWS):
        for t, tok in enumerate(ids):
            token, position, unit, segment = flat[next(at)]
            assert (token, position) == (tok, t)
    assert common_prefix([[1, 2, 3], [1, 2]]) == 2 and common_prefix([[1], [2]]) == 0


def lora_model(path: str):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = models.load_base(path, "causal", dtype="fp32")
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    return model


@pytest.mark.parametrize("kernel", ["blocks", "dense mask"])
def test_shared_forward_and_gradients_equal_the_padded_batch(tiny_model, kernel, monkeypatch):
    """Attention block by block (prefix causal, each suffix on [prefix; itself]), and the dense mask that a model
    which does not hand keywords on to its attention runs on, both give the padded batch's logits and gradients."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    model = lora_model(tiny_model)
    sharing = PrefixSharing(model)
    calls = []  # attention calls the blocks made
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(attention, "F", types.SimpleNamespace(
        scaled_dot_product_attention=lambda *a, **k: calls.append(k.get("is_causal", False)) or sdpa(*a, **k)))
    if kernel == "dense mask":
        monkeypatch.setitem(AttentionInterface._global_mapping, "sdpa", sdpa_attention_forward)
    seen = []  # tokens the embedding layer is given
    models.unwrap(model).get_input_embeddings().register_forward_hook(lambda m, a, o: seen.append(a[0].numel()))
    batch = pad_right(ROWS, 0)
    real = batch["attention_mask"].bool()

    def run(groups):
        model.zero_grad()
        with sharing.over(groups):
            logits = model(**batch, use_cache=False).logits
        (logits[real].log_softmax(-1)[:, 3]).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        return logits[real].detach(), grads

    plain_logits, plain_grads = run(None)
    shared_logits, shared_grads = run(GROUPS)
    assert seen[1] < seen[0] and seen[0] == batch["input_ids"].numel()
    layers = models.unwrap(model).config.num_hidden_layers
    # per layer: 4 prefixes, causal (one is the lone row); 6 suffixes on their prefix (7 responses, one all prefix)
    assert (calls.count(True), calls.count(False)) == ((4 * layers, 6 * layers) if kernel == "blocks" else (0, 0))
    torch.testing.assert_close(shared_logits, plain_logits, atol=1e-5, rtol=1e-5)
    for name, grad in plain_grads.items():  # gradients up to ~44: the two summation orders differ by up to ~3e-5
        torch.testing.assert_close(shared_grads[name], grad, atol=3e-5, rtol=1e-4)
    # outside `over`, and for what it cannot share (position ids given), the model runs the batch as it is
    with sharing.over(GROUPS):
        n = len(seen)
        model(**batch, position_ids=torch.arange(batch["input_ids"].size(1)).expand_as(batch["input_ids"]))
        assert seen[n] == batch["input_ids"].numel()


def test_a_batch_is_packed_once_for_the_forwards_that_share_it(tiny_model, plans):
    """DPO runs the policy and the reference (adapter off) on one batch: one packing serves both."""
    model = lora_model(tiny_model)
    sharing, batch = PrefixSharing(model), pad_right(ROWS, 0)
    with torch.no_grad(), sharing.over(GROUPS):
        policy = model(**batch).logits
        with model.disable_adapter():
            reference = model(**batch).logits
    assert len(plans) == 1 and not torch.allclose(policy, reference)
    with torch.no_grad(), sharing.over(GROUPS):
        model(**batch)
    assert len(plans) == 2  # a new `over`, a new packing


def test_what_sharing_cannot_take_runs_as_it_is(tiny_model):
    model = lora_model(tiny_model)
    config_ = models.unwrap(model).config
    assert supported(config_)
    for attr, value in (("_attn_implementation", "eager"), ("sliding_window", 64), ("num_local_experts", 4)):
        changed = copy.deepcopy(config_)
        setattr(changed, attr, value)
        assert not supported(changed), attr
    batch = pad_right(ROWS, 0)
    assert PrefixSharing.shareable(batch)
    assert not PrefixSharing.shareable({**batch, "attention_mask": batch["attention_mask"].flip(-1)})  # left pad
    models.unwrap(model).config._attn_implementation = "eager"
    sharing = PrefixSharing(model)
    with sharing.over(GROUPS):
        assert sharing.groups is None


def test_a_copy_of_a_wrapped_model_runs_its_own_weights(tiny_model):
    """The wrapper lives on the backbone: a deep copy (DPO's frozen reference with --full) is its own model."""
    model = lora_model(tiny_model)
    PrefixSharing(model)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        models.unwrap(twin).get_input_embeddings().weight.mul_(2)
    batch = pad_right(ROWS, 0)
    assert not torch.allclose(twin(**batch).logits, model(**batch).logits)
    PrefixSharing(model)  # wrapping again wraps once
    assert models.unwrap(model).base_model._align_unshared_forward.__func__.__name__ == "forward"


def adapter_weights(run_dir) -> dict[str, torch.Tensor]:
    with safe_open(str(run_dir / "adapter" / "adapter_model.safetensors"), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


@pytest.fixture
def plans(monkeypatch) -> list[int]:
    """Rows saved by each shared forward (the test sees that sharing ran, and did share)."""
    saved = []

    def counted(ids, groups):
        rows, where = plan(ids, groups)
        saved.append(sum(map(len, ids)) - sum(map(len, rows)))
        return rows, where

    monkeypatch.setattr(prefix_sharing, "plan", counted)
    return saved


def test_rm_training_with_shared_prompts_equals_one_row_per_response(tiny_model, tmp_path, plans):
    files = [write_jsonl(tmp_path / "pairs.jsonl", preference_pairs(48, 5)),
             write_jsonl(tmp_path / "ranked.jsonl", ranked_rows(8, 6))]
    write_jsonl(tmp_path / "eval.jsonl", preference_pairs(24, 7))
    runs = {}
    for shared in (True, False):
        shared_forwards = len(plans)
        out = tmp_path / f"run-{shared}"
        manifest = rm.run(rm_cfg(tiny_model, files, out, epochs=1, batch_size=16, prefix_sharing=shared,
                                 eval_data=[str(tmp_path / "eval.jsonl")], dtype="fp32"))
        runs[shared] = {**manifest["metrics"], "weights": adapter_weights(out),
                        "norm_mean": manifest["reward_norm"]["mean"], "norm_std": manifest["reward_norm"]["std"]}
        assert (len(plans) > shared_forwards) == shared
    assert all(saved > 0 for saved in plans)
    assert runs[True]["steps"] == runs[False]["steps"] == 4
    for key in ("loss_start", "loss_end", "eval_accuracy", "eval_mean_margin", "eval_loss", "norm_mean", "norm_std"):
        assert runs[True][key] == pytest.approx(runs[False][key], rel=1e-4, abs=1e-6), key
    for k, w in runs[False]["weights"].items():
        torch.testing.assert_close(runs[True]["weights"][k], w, atol=1e-4, rtol=1e-3)  # Adam after 4 steps


def test_dpo_with_shared_prompts_equals_separate_rows(tmp, plans):  # noqa: F811
    runs = {shared: dpo.run(dpo_cfg(tmp, f"dpo-shared-{shared}", max_steps=3, prefix_sharing=shared,
                                    dtype="fp32"))["metrics"] for shared in (True, False)}
    # 3 steps and two evaluations (3 batches each): each shared the prompts, the policy's and the reference's
    # forward of a batch with one packing
    assert len(plans) >= 3 * 2 and all(saved > 0 for saved in plans)
    assert runs[True]["before_eval_loss"] == pytest.approx(0.6931472, abs=1e-6)
    for key in ("loss_start", "loss_end", "eval_implicit_accuracy", "eval_implicit_margin", "eval_logps/chosen",
                "eval_logps/rejected"):
        assert runs[True][key] == pytest.approx(runs[False][key], rel=1e-4, abs=1e-5), key
    assert runs[True]["eval_implicit_margin"] != pytest.approx(0.0, abs=1e-3)  # it trained: the comparison has teeth


def test_prefix_sharing_is_on_by_default_in_both_pair_stages():
    assert config.RMConfig().prefix_sharing and config.DPOConfig().prefix_sharing
