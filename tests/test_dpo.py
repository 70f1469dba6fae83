"""DPO: the reference is the SFT model (loss ln 2 at step 0), a synthetic preference is learned, shared data code."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from align import chat, config, data, dpo, models, sft
from align.cli import app

from test_rm import PLAIN
from test_sft import qa_rows

runner = CliRunner()


def preference_pairs(n: int, seed: int) -> list[dict]:
    """Chosen = rejected with 'banana' inserted somewhere: the marker is the whole difference."""
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(PLAIN) for _ in range(rng.randint(3, 7))]
        marked = list(words)
        marked.insert(rng.randint(0, len(words)), "banana")
        out.append({"prompt": "tell me about " + " ".join(rng.choice(PLAIN) for _ in range(3)),
                    "chosen": " ".join(marked), "rejected": " ".join(words)})
    return out


def dpo_cfg(train, out, **kw) -> config.DPOConfig:
    base = dict(data=[train], output=str(out), epochs=3, batch_size=8, learning_rate=5e-3, lora_r=16, lora_alpha=16,
                logging_steps=10, warmup_ratio=0.0, beta=0.1)
    base.update(kw)
    return config.build(config.DPOConfig, flags=base)


@pytest.fixture(scope="module")
def sft_and_pairs(tiny_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dpo")
    (tmp / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in qa_rows()))
    sft.run(config.build(config.SFTConfig, flags=dict(model=tiny_model, data=[str(tmp / "qa.jsonl")],
                                                      output=str(tmp / "sft"), max_steps=30, learning_rate=5e-3)))
    (tmp / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in preference_pairs(200, 0)))
    (tmp / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in preference_pairs(60, 1)))
    return tmp


@pytest.fixture(scope="module")
def trained(sft_and_pairs):
    tmp = sft_and_pairs
    return dpo.run(dpo_cfg(str(tmp / "train.jsonl"), tmp / "dpo", from_run=str(tmp / "sft"),
                           eval_data=[str(tmp / "eval.jsonl")]))


def test_step_zero_policy_equals_the_sft_reference(trained):
    m = trained["metrics"]
    # evaluated before the first update: implicit rewards 0, sigmoid loss ln 2 -- only if reference == SFT model
    assert m["before_eval_loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert m["before_eval_rewards/chosen"] == pytest.approx(0.0, abs=1e-4)
    assert m["before_eval_rewards/rejected"] == pytest.approx(0.0, abs=1e-4)


def test_learns_the_preference(trained):
    m = trained["metrics"]
    assert m["loss_end"] < m["loss_start"] and m["eval_loss"] < math.log(2)
    assert m["eval_implicit_accuracy"] > 0.9, m
    assert trained["lineage"]["adapters"][-1].endswith("sft/adapter")


def test_reference_would_differ_if_it_were_the_base(sft_and_pairs, tiny_model):
    """The step-0 check can fail: the bare base and the SFT model give different log-probs."""
    tok = models.load_tokenizer(tiny_model)
    pair = data.load_pairs(str(sft_and_pairs / "eval.jsonl")).values()[0]
    ids = chat.conversation_ids(tok, pair["prompt"], pair["chosen"])
    import torch

    base = models.load_base(tiny_model)
    sft_model, _, _ = models.load_run(str(sft_and_pairs / "sft"))
    with torch.no_grad():
        x = torch.tensor([ids])
        assert not torch.allclose(base(x).logits, sft_model(x).logits, atol=1e-3)


def test_saved_policy_is_a_plain_adapter(trained, sft_and_pairs):
    adapter = sft_and_pairs / "dpo" / "adapter"
    assert (adapter / "adapter_model.safetensors").exists() and not (adapter / "ref").exists()
    model, tok, manifest = models.load_run(str(sft_and_pairs / "dpo"))
    assert manifest["stage"] == "dpo"


def test_prompt_and_responses_split_at_tokens_and_end_at_end_of_turn(tiny_model):
    tok = models.load_tokenizer(tiny_model)
    v = {"prompt": [{"role": "user", "content": "the cat " * 30}], "chosen": [{"role": "assistant", "content": "blue"}],
         "rejected": [{"role": "assistant", "content": "red " * 40}]}
    counts = {"truncated_prompts": 0, "truncated_responses": 0}
    cfg = config.build(config.DPOConfig, flags=dict(max_prompt_length=20, max_length=40))
    row = dpo.encode_pair(tok, v, cfg, counts)
    eot = chat.end_of_turn_id(tok)
    assert len(row["prompt_ids"]) == 20 and tok.decode(row["prompt_ids"]).endswith("assistant\n")
    assert row["chosen_ids"][-1] == eot and tok.decode(row["chosen_ids"]) == "blue<|im_end|>"
    assert len(row["rejected_ids"]) == 20 and counts == {"truncated_prompts": 1, "truncated_responses": 1}


def test_ranked_data_and_bad_input(sft_and_pairs, jsonl, tmp_path):
    ranked = jsonl("ranked.jsonl", [{"prompt": "p", "responses": ["a", "b", "c"]}])
    loaded = data.load_pairs(ranked)  # the very loader the RM stage uses
    assert len(loaded.rows) == 3
    bad = jsonl("bad.jsonl", [{"prompt": "p", "responses": ["only one"]}])
    result = runner.invoke(app, ["dpo", "--from", str(sft_and_pairs / "sft"), "--data", bad, "--output",
                                 str(tmp_path / "o")])
    assert result.exit_code == 2 and "a ranking needs at least two responses" in result.output
    assert not (tmp_path / "o").exists()
    result = runner.invoke(app, ["dpo", "--from", str(sft_and_pairs / "sft"), "--data", ranked, "--output",
                                 str(tmp_path / "o"), "--loss-type", "ipo", "--label-smoothing", "0.1"])
    assert result.exit_code == 2 and "label_smoothing has no effect with loss_type 'ipo'" in result.output
