"""DPO: the reference is the SFT model (loss ln 2 before any update), a synthetic preference is learned, and the
data path is the shared one (rankings -> pairs, bad input exits 2 before a run directory exists)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from align import chat, config, data, dpo, evaluate, models, sft
from align.cli import app
from conftest import WORDS, write_jsonl

runner = CliRunner()
PLAIN = [w for w in WORDS if w != "banana"]
BETA = 0.1


def preference_pairs(n: int, seed: int) -> list[dict]:
    """Chosen = rejected with 'banana' inserted somewhere: the marker is the whole difference."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = rng.choices(PLAIN, k=rng.randint(3, 6))
        marked = list(words)
        marked.insert(rng.randint(0, len(words)), "banana")
        out.append({"prompt": "tell me about " + " ".join(rng.choices(PLAIN, k=3)),
                    "chosen": " ".join(marked), "rejected": " ".join(words)})
    return out


def dpo_cfg(tmp: Path, out: str, **kw) -> config.DPOConfig:
    flags = dict(from_run=str(tmp / "sft"), data=[str(tmp / "train.jsonl")], eval_data=[str(tmp / "eval.jsonl")],
                 output=str(tmp / out), epochs=3, batch_size=16, learning_rate=1e-2, lora_r=8, lora_alpha=16,
                 warmup_ratio=0.0, logging_steps=5, beta=BETA)
    return config.build(config.DPOConfig, flags={**flags, **kw})


@pytest.fixture(scope="module")
def tmp(tiny_model, tmp_path_factory) -> Path:
    """A short SFT run on the tiny model (so the SFT model differs from the base) and the preference files."""
    tmp = tmp_path_factory.mktemp("dpo")
    rng = random.Random(0)
    answers = [" ".join(rng.choices(PLAIN, k=4)) for _ in range(16)]
    write_jsonl(tmp / "sft.jsonl", [{"prompt": "tell me about " + a, "completion": a} for a in answers])
    sft.run(config.build(config.SFTConfig, flags=dict(model=tiny_model, data=[str(tmp / "sft.jsonl")],
                                                      output=str(tmp / "sft"), max_steps=15, learning_rate=1e-2,
                                                      logging_steps=5)))
    write_jsonl(tmp / "train.jsonl", preference_pairs(160, 0))
    write_jsonl(tmp / "eval.jsonl", preference_pairs(48, 1))
    return tmp


class BananaJudge:
    """Stands in for `reward_model.load_reward_model(...)`: +1 per 'banana' (the judge wiring, not an RM, is
    tested). `scored`: how many responses it was given."""

    def __init__(self, manifest: dict):
        self.manifest, self.scored = manifest, 0

    def score(self, prompts, responses):
        self.scored += len(responses)
        return [float(r.split().count("banana")) for r in responses]


@pytest.fixture(scope="module")
def trained(tmp):
    from align import reward_model

    # a judge run directory as `align rm` leaves it (a complete rm manifest with the policy's tokenizer)
    sft_manifest = json.loads((tmp / "sft" / "align.json").read_text())
    (tmp / "rm").mkdir()
    judge = BananaJudge({**sft_manifest, "stage": "rm"})
    (tmp / "rm" / "align.json").write_text(json.dumps(judge.manifest))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reward_model, "load_reward_model", lambda run_dir: judge)
        manifest = dpo.run(dpo_cfg(tmp, "dpo", judge=str(tmp / "rm"), judge_max_new_tokens=6))
    return manifest, judge


def test_before_any_update_the_policy_is_the_sft_reference(trained):
    m = trained[0]["metrics"]
    # evaluate() before training, and the step-1 training loss (computed in the forward before the first update)
    assert m["before_eval_loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert m["loss_start"] == pytest.approx(math.log(2), abs=1e-6)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins"):
        assert m[f"before_eval_{key}"] == pytest.approx(0.0, abs=1e-6)


def test_a_bare_base_reference_would_fail_that_check(tmp, tiny_model):
    """The check above has teeth: against the base, the SFT model's implicit rewards are far from 0."""
    base = models.load_base(tiny_model)
    sft_model, tok, _ = models.load_run(str(tmp / "sft"))
    pairs = data.load_pairs(str(tmp / "eval.jsonl")).values()[:8]
    prompts, answers = [p["prompt"] for p in pairs], [p["chosen"][0]["content"] for p in pairs]
    rewards = [BETA * (a - b) for a, b in zip(evaluate.sequence_logprobs(sft_model, tok, prompts, answers),
                                               evaluate.sequence_logprobs(base, tok, prompts, answers))]
    assert sum(abs(r) for r in rewards) / len(rewards) > 0.1, rewards


def test_answer_log_probs_in_batches_equal_one_answer_at_a_time(tmp):
    """evaluate.sequence_logprobs (the KL of `align eval` and the judge): left-padded batches of similar length,
    logits for answer positions only; each equals log p(answer + end-of-turn | prompt) of its pair alone, from
    the full logits. fp32: the property is the batching, not precision."""
    import torch

    from align import ppo_math

    model, tok, _ = models.load_run(str(tmp / "sft"), dtype="fp32")
    prompts = [[{"role": "user", "content": "tell me about " + "the cat " * n}] for n in (1, 6, 2, 12, 1)]
    answers = ["red", "blue sky and the green sea " * 3, "banana", "", "red"]
    alone = []
    for p, a in zip(prompts, answers):
        n = len(chat.prompt_ids(tok, p))
        ids = torch.tensor([chat.conversation_ids(tok, p, [{"role": "assistant", "content": a or " "}])])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[:, n - 1: -1]
        alone.append(float(ppo_math.logprobs_from_logits(logits, ids[:, n:]).sum()))
    batched = evaluate.sequence_logprobs(model, tok, prompts, answers, max_tokens=160)  # several batches, padded
    assert batched == pytest.approx(alone, abs=1e-4)
    assert batched[0] == batched[4] and all(lp < 0 for lp in batched)


def test_evaluation_cuts_long_prompts_as_training_did(tmp):
    """`align eval --max-prompt-length N`: a longer prompt keeps its last N tokens, both where the answer is
    generated and where its log-probs (the KL) are taken; the same answers and log-probs as from the cut ids."""
    import torch

    from align import infer, ppo_math

    model, tok, _ = models.load_run(str(tmp / "sft"), dtype="fp32")
    prompts = [[{"role": "user", "content": "tell me about " + "the cat " * n}] for n in (1, 9, 30)]
    full = [chat.prompt_ids(tok, p) for p in prompts]
    limit = len(full[1]) - 3  # the first prompt fits, the other two are cut
    cut = [chat.truncate_left(tok, ids, limit) for ids in full]
    assert cut[0] == full[0] and [len(c) for c in cut[1:]] == [limit, limit]
    assert cut[2][-limit + 1:] == full[2][-limit + 1:] and cut[2][0] == full[2][0]  # the end, and a leading BOS
    answers = infer.generate(model, tok, prompts, max_new_tokens=5, max_prompt_length=limit)
    stop = chat.stop_token_ids(tok)
    for ids, answer in zip(cut, answers):
        with torch.no_grad():
            out = model.generate(input_ids=torch.tensor([ids]), max_new_tokens=5, do_sample=False, eos_token_id=stop,
                                 pad_token_id=tok.pad_token_id)
        assert tok.decode(out[0, len(ids):], skip_special_tokens=True).strip() == answer
    answers = ["red", "blue sky", "green sea and sand"]
    alone = []
    for p, ids, a in zip(prompts, cut, answers):
        whole = chat.conversation_ids(tok, p, [{"role": "assistant", "content": a}])
        row = torch.tensor([ids + whole[len(chat.prompt_ids(tok, p)):]])
        with torch.no_grad():
            logits = model(input_ids=row).logits[:, len(ids) - 1: -1]
        alone.append(float(ppo_math.logprobs_from_logits(logits, row[:, len(ids):]).sum()))
    cut_lp = evaluate.sequence_logprobs(model, tok, prompts, answers, max_prompt_length=limit)
    assert cut_lp == pytest.approx(alone, abs=1e-4)
    whole_lp = evaluate.sequence_logprobs(model, tok, prompts, answers)
    assert whole_lp[2] != pytest.approx(alone[2], abs=1e-3)  # the cut matters


def test_learns_the_preference_and_logs_it(trained, tmp):
    manifest, _ = trained
    m = manifest["metrics"]
    assert m["loss_end"] < m["loss_start"] and m["eval_loss"] < 0.5 * math.log(2), m
    assert m["eval_implicit_accuracy"] > 0.9 and m["eval_implicit_margin"] > 0, m
    gap = {w: m[f"{w}eval_logps/chosen"] - m[f"{w}eval_logps/rejected"] for w in ("before_", "")}
    assert gap[""] > gap["before_"], gap
    logs = [json.loads(line) for line in (tmp / "dpo" / "logs.jsonl").read_text().splitlines()]
    train_lines = [x for x in logs if "loss" in x]
    assert {"rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"} <= set(train_lines[-1])
    assert [x["step"] for x in logs if "eval_rewards/accuracies" in x] == [0, m["steps"]]  # before and after


def test_judge_scores_the_saved_policy_against_the_sft_model(trained, tmp):
    manifest, judge = trained
    m = manifest["metrics"]
    # the policy's and the SFT model's answer to each distinct prompt
    assert m["judge_prompts"] == len({r["prompt"] for r in preference_pairs(48, 1)})
    assert judge.scored == 2 * m["judge_prompts"]
    # the policy learned to say 'banana', the SFT model never does
    assert m["judge_reward"] > m["judge_reference_reward"] and m["judge_win_rate"] > 0.5


def test_output_is_a_run_like_any_stage(trained, tmp):
    manifest, _ = trained
    assert manifest["stage"] == "dpo" and manifest["status"] == "complete"
    assert manifest["lineage"]["adapters"][-1].endswith("sft/adapter")
    adapter = tmp / "dpo" / "adapter"
    assert (adapter / "adapter_model.safetensors").exists() and not (adapter / "ref").exists()
    assert not (tmp / "dpo" / "checkpoints").exists()
    result = runner.invoke(app, ["generate", str(tmp / "dpo"), "-p", "tell me about cat", "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["merge", str(tmp / "dpo"), "--output", str(tmp / "merged")])
    assert result.exit_code == 0 and (tmp / "merged" / "model.safetensors").exists(), result.output


def test_full_fine_tuning_keeps_the_sft_model_as_reference(tmp):
    """Without an adapter to switch off, TRL would reload the bare base by name; we hand it the SFT model."""
    m = dpo.run(dpo_cfg(tmp, "dpo-full", full=True, max_steps=1, learning_rate=1e-4))["metrics"]
    assert m["before_eval_loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert m["before_eval_rewards/chosen"] == pytest.approx(0.0, abs=1e-6)


def test_precomputed_reference_log_probs(tmp):
    # fp32: the property is that the precomputed log-probs are the SFT model's. In bf16 they come from another
    # pass (before training, other batches and padding) than the policy's first step, and the two round apart:
    # loss_start ln 2 + 4e-5 (already so at 64f207b).
    m = dpo.run(dpo_cfg(tmp, "dpo-pre", precompute_ref_log_probs=True, max_steps=1, dtype="fp32"))["metrics"]
    assert m["before_eval_loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert m["loss_start"] == pytest.approx(math.log(2), abs=1e-6)


def test_loss_options_map_to_trl():
    opts = dpo.trl_options(config.DPOConfig(loss_type="robust", label_smoothing=0.1, sft_loss_weight=0.5))
    assert opts["loss_type"] == ["robust", "sft"] and opts["loss_weights"] == [1.0, 0.5]
    assert opts["label_smoothing"] == 0.1 and opts["truncation_mode"] == "keep_start"


def test_prompt_and_responses_split_at_tokens_and_end_at_end_of_turn(tiny_model):
    tok = models.load_tokenizer(tiny_model)
    v = {"prompt": [{"role": "user", "content": "the cat " * 30}], "chosen": [{"role": "assistant", "content": "blue"}],
         "rejected": [{"role": "assistant", "content": "red " * 40}]}
    counts = {"truncated_prompts": 0, "truncated_responses": 0}
    cfg = config.build(config.DPOConfig, flags=dict(max_prompt_length=20, max_length=40))
    row = dpo.encode_pair(tok, v, cfg, counts)
    assert len(row["prompt_ids"]) == 20 and tok.decode(row["prompt_ids"]).endswith("<|im_start|>assistant\n")
    assert row["chosen_ids"][-1] == chat.end_of_turn_id(tok) and tok.decode(row["chosen_ids"]) == "blue<|im_end|>"
    assert len(row["rejected_ids"]) == 20 and counts == {"truncated_prompts": 1, "truncated_responses": 1}
    # untruncated, prompt + response is exactly the templated conversation
    row = dpo.encode_pair(tok, v, config.DPOConfig(), counts)
    assert row["prompt_ids"] + row["chosen_ids"] == chat.conversation_ids(tok, v["prompt"], v["chosen"])


def test_rankings_become_pairs_as_in_the_rm_stage(tiny_model, jsonl):
    tok = models.load_tokenizer(tiny_model)
    ranked = jsonl("ranked.jsonl", [{"prompt": "p", "responses": ["best", "middle", "worst"]}])
    rows, counts = dpo.encode_pairs(data.load_pairs(ranked), tok, config.DPOConfig())
    said = [(tok.decode(r["chosen_ids"]), tok.decode(r["rejected_ids"])) for r in rows]
    assert said == [("best<|im_end|>", "middle<|im_end|>"), ("best<|im_end|>", "worst<|im_end|>"),
                    ("middle<|im_end|>", "worst<|im_end|>")] and counts["pairs"] == 3


@pytest.mark.parametrize("rows, flags, message", [
    ([{"prompt": "p", "responses": ["only one"]}], [], "a ranking needs at least two responses"),
    ([{"prompt": "p", "chosen": "a"}], [], "missing field"),
    ([{"prompt": "p", "chosen": "a", "rejected": "b"}], ["--loss-type", "ipo", "--label-smoothing", "0.1"],
     "label_smoothing has no effect with loss_type 'ipo'"),
    ([{"prompt": "p", "chosen": "a", "rejected": "b"}], ["--loss-type", "dpo"], "unknown loss_type 'dpo'"),
    ([{"prompt": "p", "chosen": "a", "rejected": "b"}], ["--max-prompt-length", "2000"], "max_prompt_length"),
    ([{"prompt": "p", "chosen": "a", "rejected": "b"}], ["--judge", "SFT"], "not a reward model"),
])
def test_bad_input_exits_2_before_a_run_directory_exists(tmp, jsonl, tmp_path, rows, flags, message):
    flags = [str(tmp / "sft") if f == "SFT" else f for f in flags]
    result = runner.invoke(app, ["dpo", "--from", str(tmp / "sft"), "--data", jsonl("d.jsonl", rows),
                                 "--eval-data", jsonl("e.jsonl", rows), "--output", str(tmp_path / "o"), *flags])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_micro_batches_give_the_same_steps_as_whole_batches(tmp):
    """16 pairs per step as 4 micro-batches of 4 (gradients accumulated) train the same policy as one pass."""
    # fp32: the property is equal gradients; in bf16 the two batchings round apart (margin off by ~1% relative)
    whole = dpo.run(dpo_cfg(tmp, "dpo-whole", max_steps=3, lora_dropout=0.0, micro_batch_tokens=0, dtype="fp32"))
    micro = dpo.run(dpo_cfg(tmp, "dpo-micro", max_steps=3, lora_dropout=0.0, micro_batch_tokens=4 * 2 * 1024,
                            dtype="fp32"))
    assert whole["config"]["batch_size"] == 16 and micro["metrics"]["steps"] == whole["metrics"]["steps"] == 3
    for key in ("loss_end", "eval_implicit_accuracy", "eval_implicit_margin"):
        assert micro["metrics"][key] == pytest.approx(whole["metrics"][key], rel=1e-3, abs=1e-5), key


def test_held_out_accuracy_counts_pairs_not_batches(tmp):
    """33 held-out pairs in eval batches of 16, 16 and 1, and a few of them reversed (banana in the rejected
    answer, so a policy that learned banana gets them wrong): TRL's mean of the three batch means would weigh
    the last pair like 16 others, and accuracy x 33 would not be a whole number."""
    pairs = preference_pairs(33, 2)
    for i in (3, 11, 20, 27, 32):
        pairs[i] = {**pairs[i], "chosen": pairs[i]["rejected"], "rejected": pairs[i]["chosen"]}
    write_jsonl(tmp / "eval-mixed.jsonl", pairs)
    m = dpo.run(dpo_cfg(tmp, "dpo-mixed", eval_data=[str(tmp / "eval-mixed.jsonl")], max_steps=20, eval_steps=15,
                        micro_batch_tokens=0))["metrics"]
    assert m["eval_pairs"] == 33  # the counts of the Trainer's own evaluation of the last step: it is not run twice
    logs = [json.loads(line) for line in (tmp / "dpo-mixed" / "logs.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logs if "eval_loss" in x] == [0, 15, 20]
    correct = m["eval_implicit_accuracy"] * 33
    assert correct == pytest.approx(round(correct), abs=1e-6) and 0 < m["eval_implicit_accuracy"] < 1, m
