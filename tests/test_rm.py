"""Reward model: comparison formats, learning a preference, exact reloads, scoring at the end-of-turn token."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from typer.testing import CliRunner

from align import chat, config, data, infer, models, prefix_sharing, reward_model, rm, train
from align.cli import app
from align.errors import ConfigError, DataError, RunError

from conftest import WORDS, write_jsonl

runner = CliRunner()
PLAIN = [w for w in WORDS if w != "banana"]
HH_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "preference"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """A 100k-parameter model runs as fast on one thread as on two, and one thread does not slow down ~15x
    (measured: 2.8 s -> 44 s for the training below) when another process competes for the two cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def preference_pairs(n: int, seed: int) -> list[dict]:
    """Responses that mention 'banana' are preferred. The rejected answer is the chosen one with another word
    in banana's place, so the marker is the only signal (a few dozen steps learn it, whatever the seed)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(PLAIN) for _ in range(rng.randint(3, 7))]
        at = rng.randint(0, len(words))
        out.append({"prompt": "tell me about " + " ".join(rng.choice(PLAIN) for _ in range(3)),
                    "chosen": " ".join(words[:at] + ["banana"] + words[at:]),
                    "rejected": " ".join(words[:at] + [rng.choice(PLAIN)] + words[at:])})
    return out


def ranked_rows(n: int, seed: int) -> list[dict]:
    """Rankings of 3: the banana answer is rank 1, the two others tie at rank 2 (so 2 pairs, not 3)."""
    out = []
    for p in preference_pairs(n, seed):
        other = " ".join(random.Random(p["chosen"]).sample(PLAIN, 4))
        out.append({"prompt": p["prompt"], "responses": [{"text": p["rejected"], "rank": 2},
                                                         {"text": p["chosen"], "rank": 1}, {"text": other, "rank": 2}]})
    return out


# `align score` / `align eval` load the RM merged (reward_model.load_reward_model): in bf16 each weight W + BA is
# rounded once, so its scores (bf16 values) move some bf16 steps from the live LoRA model's: measured at most 6
# steps (3%, 0.0625 on scores of -3.3..4) on one CPU, and up to 0.156 on one score of 60 (1.30 -> 1.44, with the
# dense mask as with attention in blocks) on an AMD EPYC with AVX512-BF16. In fp32 they agree to float rounding.
MERGED = {"abs": 1e-5} if models.dtype_name() == "fp32" else {"rel": 0.05, "abs": 0.2}


def rm_cfg(model, data_files, out, **kw) -> config.RMConfig:
    # lr 1e-2: a 100k-parameter model with LoRA needs far more than a real one (see RMConfig)
    base = dict(model=model, data=data_files, output=str(out), epochs=6, batch_size=32, learning_rate=1e-2,
                logging_steps=5, warmup_ratio=0.1)
    return config.build(config.RMConfig, flags={**base, **kw})


@pytest.fixture(scope="module")
def trained_rm(tiny_model, tmp_path_factory):
    """One LoRA RM on 160 pairs + 40 rankings, evaluated during training; the in-process model is kept."""
    tmp = tmp_path_factory.mktemp("rm")
    files = [write_jsonl(tmp / "pairs.jsonl", preference_pairs(160, 0)), write_jsonl(tmp / "ranked.jsonl", ranked_rows(40, 2))]
    write_jsonl(tmp / "eval.jsonl", preference_pairs(60, 1))
    kept = []
    with pytest.MonkeyPatch.context() as mp:
        save = train.save_model
        mp.setattr(train, "save_model", lambda model, *a: (kept.append(model), save(model, *a))[1])
        manifest = rm.run(rm_cfg(tiny_model, files, tmp / "run", eval_data=[str(tmp / "eval.jsonl")], eval_steps=10))
    return tmp, manifest, reward_model.RewardModel(kept[0], models.load_tokenizer(tiny_model), manifest)


def eval_set(tmp) -> tuple[list[list[dict]], list[str], list[str]]:
    pairs = [json.loads(x) for x in (tmp / "eval.jsonl").read_text().splitlines()]
    return ([[{"role": "user", "content": p["prompt"]}] for p in pairs], [p["chosen"] for p in pairs],
            [p["rejected"] for p in pairs])


def test_learns_the_preference_on_held_out_pairs(trained_rm, tiny_model):
    tmp, manifest, _ = trained_rm
    m = manifest["metrics"]
    groups, _ = rm.encode_groups(data.load_pairs([str(tmp / "pairs.jsonl"), str(tmp / "ranked.jsonl")]),
                                 models.load_tokenizer(tiny_model), 1024, "left")
    assert m["tokens"] == 6 * sum(len(s) for g in groups for s in g.sequences)  # 6 epochs, micro-batches counted
    assert m["eval_accuracy"] > 0.9 and m["eval_mean_margin"] > 1, m
    assert m["loss_end"] < m["loss_start"]
    logs = [json.loads(x) for x in (tmp / "run" / "logs.jsonl").read_text().splitlines()]
    evals = [x for x in logs if "eval_accuracy" in x]
    assert [x["step"] for x in evals][:2] == [10, 20]  # --eval-steps works mid-training
    # the Trainer evaluates the last step itself; the stage reports that evaluation, not a second pass
    assert m["steps"] % 10 and [x["step"] for x in evals].count(m["steps"]) == 1
    assert m["eval_accuracy"] == evals[-1]["eval_accuracy"] and m["eval_loss"] == evals[-1]["eval_loss"]
    # 160 pairs + 40 rankings of 3 with a tie (2 pairs each); every distinct response encoded once
    assert manifest["data"]["counts"]["train"] == {"pairs": 240, "truncated_pairs": 0, "dropped_pairs": 0, "ties": 40}
    # the reward's mean/std from whole prompt groups drawn until rm.NORM_SAMPLE of the 440 responses are scored
    assert rm.NORM_SAMPLE <= manifest["reward_norm"]["n"] < rm.NORM_SAMPLE + 3 and manifest["reward_norm"]["std"] > 0
    assert manifest["model_kind"] == "seq_cls" and manifest["end_of_turn_id"] == 2


def test_the_saved_rm_scores_exactly_as_the_trained_one(trained_rm, tiny_model):
    tmp, manifest, in_process = trained_rm
    prompts, chosen, _ = eval_set(tmp)
    reloaded = reward_model.load_reward_model(str(tmp / "run"), merge=False)  # the adapter as it was trained
    expected = in_process.score(prompts, chosen)
    assert reloaded.score(prompts, chosen) == pytest.approx(expected, abs=1e-5)
    merged = reward_model.load_reward_model(str(tmp / "run"))  # what align score uses: no LoRA left to run
    assert not hasattr(merged.model, "peft_config")
    assert merged.score(prompts, chosen) == pytest.approx(expected, **MERGED)
    with safe_open(tmp / "run" / "adapter" / "adapter_model.safetensors", "pt") as f:
        assert "base_model.model.score.weight" in f.keys()  # the trained head is in the adapter
    base = models.load_base(tiny_model, "seq_cls")
    base.config.pad_token_id = reloaded.tokenizer.pad_token_id
    random_head = reward_model.RewardModel(base, reloaded.tokenizer, manifest)
    assert random_head.score(prompts[:4], chosen[:4]) != pytest.approx(expected[:4], abs=1e-3)


def test_align_score_on_pairs_reproduces_the_eval_accuracy(trained_rm):
    tmp, manifest, in_process = trained_rm
    out = tmp / "scores.jsonl"
    result = runner.invoke(app, ["score", str(tmp / "run"), "--data", str(tmp / "eval.jsonl"), "--output", str(out)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["row"] for x in lines] == list(range(1, 61))
    prompts, chosen, rejected = eval_set(tmp)
    assert [x["chosen_reward"] for x in lines] == pytest.approx(in_process.score(prompts, chosen), **MERGED)
    assert [x["rejected_reward"] for x in lines] == pytest.approx(in_process.score(prompts, rejected), **MERGED)
    acc = sum(x["chosen_reward"] > x["rejected_reward"] for x in lines) / len(lines)
    assert acc == pytest.approx(manifest["metrics"]["eval_accuracy"])
    margin = sum(x["chosen_reward"] - x["rejected_reward"] for x in lines) / len(lines)
    assert margin == pytest.approx(manifest["metrics"]["eval_mean_margin"],
                                   **({"abs": 1e-4} if models.dtype_name() == "fp32" else MERGED))
    assert f"accuracy {acc:.4g}" in result.output


def test_align_score_on_answers_and_conversations(trained_rm, jsonl):
    tmp, _, in_process = trained_rm
    q = [{"role": "user", "content": "tell me about the cat"}]
    answers = jsonl("answers.jsonl", [{"prompt": q[0]["content"], "response": "banana red sky"},
                                      {"prompt": q[0]["content"], "response": "red big sky"}])
    chats = jsonl("chats.jsonl", [{"messages": q + [{"role": "assistant", "content": "banana red sky"}]}])
    expected = in_process.score([q, q], ["banana red sky", "red big sky"])
    result = runner.invoke(app, ["score", str(tmp / "run"), "--data", answers])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    assert [x["reward"] for x in lines] == pytest.approx(expected, **MERGED)
    assert lines[0]["reward"] > lines[1]["reward"]  # the learned preference shows
    result = runner.invoke(app, ["score", str(tmp / "run"), "--data", chats])
    assert json.loads(result.stdout.splitlines()[0])["reward"] == pytest.approx(expected[0], **MERGED)
    assert in_process.score_conversations([q + [{"role": "assistant", "content": "banana red sky"}]]) == \
        pytest.approx(expected[:1], abs=1e-6)
    text = jsonl("text.jsonl", [{"text": "banana"}])
    result = runner.invoke(app, ["score", str(tmp / "run"), "--data", text])
    assert result.exit_code == 2 and "row 1, field 'text': plain text has no prompt/response turns" in result.output
    unanswered = jsonl("unanswered.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    result = runner.invoke(app, ["score", str(tmp / "missing-run"), "--data", unanswered])  # checked before loading
    assert result.exit_code == 2 and "row 1, field 'messages': the conversation must end with an assistant" in result.output


def test_scoring_encodes_each_distinct_response_once_in_batches_of_similar_length(trained_rm, monkeypatch):
    """RewardModel.score dedupes, keeps a prompt's responses in one batch (they run the prompt once), batches
    by length and a token budget, and gives each row the score it has when scored alone, in the rows' order."""
    _, _, live = trained_rm
    q = [[{"role": "user", "content": "tell me about " + w}] for w in ("the cat", "a big red sky and the green sea")]
    answers = ["banana", "red " * 12, "the cat sat on the mat " * 3, "banana", "blue sky", "red " * 12, "yes"]
    prompts = [q[i % 2] for i in range(len(answers))] + [q[0]] * 3
    answers = answers + ["banana", "the cat sat on the mat " * 3, "banana"]  # rows 5, 7, 8, 9 repeat 1, 0, 2, 0
    live.sharing.active = False  # the baseline runs unshared
    alone = [live.score([p], [a])[0] for p, a in zip(prompts, answers)]
    live.sharing.active = True
    seen, shared = [], []
    real, plan = reward_model.sequence_rewards, prefix_sharing.plan

    def counted(model, input_ids, attention_mask):
        seen.append(attention_mask)
        return real(model, input_ids, attention_mask)

    def planned(ids, groups):
        shared.append(sorted(map(len, groups)))
        return plan(ids, groups)

    monkeypatch.setattr(reward_model, "sequence_rewards", counted)
    monkeypatch.setattr(prefix_sharing, "plan", planned)
    distinct = {repr((p, a)) for p, a in zip(prompts, answers)}
    # 96 tokens: batches within the budget, q0's 4 answers in parts that fit (here one answer each: nothing to
    # share); 4096: all in one batch, a prompt's answers together (q1's 2, q0's 4), each running its prompt once
    for budget in (96, 4096):
        seen.clear()
        shared.clear()
        batched = reward_model.RewardModel(live.model, live.tokenizer, live.manifest, max_tokens=budget)
        assert batched.score(prompts, answers) == pytest.approx(alone, abs=1e-5)
        assert sum(len(m) for m in seen) == len(distinct) == 6  # each distinct pair scored once
        widths = [m.size(1) for m in seen]
        assert widths == sorted(widths)  # shortest first
        assert all(m.numel() <= budget for m in seen)
    assert len(seen) == 1 and sorted(shared[0]) == [2, 4]
    assert infer.length_batches([5, 1, 4, 9, 2], max_tokens=8) == [[1, 4], [2], [0], [3]]
    assert infer.length_batches([5, 1, 4, 9, 2], max_rows=2) == [[1, 4], [2, 0], [3]]
    assert infer.length_batches([5, 1, 4], max_tokens=16, rows=[1, 2, 2]) == [[1, 2], [0]]  # groups of rows


def test_a_reward_model_run_is_checked_once_for_every_use(trained_rm, tiny_model, tiny_base_model, tmp_path):
    """reward_model.require_rm_run: what `align score`, `align eval`, DPO's --judge and PPO's --reward accept."""
    tmp, manifest, _ = trained_rm
    tok = models.load_tokenizer(tiny_model)
    assert reward_model.require_rm_run(str(tmp / "run"), tok, "--judge x")["stage"] == "rm"
    for name, change in (("sft", {"stage": "sft"}), ("interrupted", {"status": "interrupted"})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "align.json").write_text(json.dumps({**manifest, **change}))
    with pytest.raises(RunError, match=r"^--judge J: a sft run, not a reward model \(train one with `align rm`\)$"):
        reward_model.require_rm_run(str(tmp_path / "sft"), tok, "--judge J")
    with pytest.raises(RunError, match="the rm run is interrupted, not complete"):
        reward_model.require_rm_run(str(tmp_path / "interrupted"), tok, "--judge J")
    with pytest.raises(RunError, match="not an align run directory"):
        reward_model.require_rm_run(str(tmp_path), tok)
    other = models.load_tokenizer(tiny_base_model)  # no chat template of its own: align's default one
    with pytest.raises(RunError, match="^--reward R: template hash differs"):
        reward_model.require_rm_run(str(tmp / "run"), other, "--reward R")
    assert reward_model.require_rm_run(str(tmp / "run"))["stage"] == "rm"  # no tokenizer: not compared
    result = runner.invoke(app, ["score", str(tmp_path / "sft"), "--data", str(tmp / "eval.jsonl")])
    assert result.exit_code == 2 and "a sft run, not a reward model" in result.output


def test_the_reward_is_read_at_the_end_of_turn_token_never_at_padding(trained_rm):
    _, _, model = trained_rm
    prompt = [{"role": "user", "content": "tell me about the cat"}]
    alone = model.score([prompt], ["banana red"])
    batched = model.score([prompt, prompt], ["banana red", " ".join(["the cat sat on the mat"] * 8)])
    assert batched[0] == pytest.approx(alone[0], abs=1e-5)
    batch = reward_model.encode_for_scoring(model.tokenizer, [prompt, prompt], ["banana red", "the cat sat on the mat " * 8],
                                  model.manifest)
    assert batch["attention_mask"][0].sum() < batch["attention_mask"].shape[1]  # the short one is padded
    eot = model.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert model.tokenizer.pad_token_id == eot  # what makes HF's pad-based pooling read the wrong token
    assert batch["input_ids"][torch.arange(2), batch["last_index"]].tolist() == [eot, eot]
    # Independently: HF's own head on the unpadded row, told there is no pad token, reads its last token
    # (the end-of-turn); with pad == EOS it would read the token before it, which gives another score.
    ids = batch["input_ids"][:1, : int(batch["last_index"][0]) + 1]
    config = model.model.get_base_model().config
    with torch.no_grad():
        hf_default = float(model.model(input_ids=ids).logits[0, 0])
        config.pad_token_id = None
        try:
            at_eot = float(model.model(input_ids=ids).logits[0, 0])
        finally:
            config.pad_token_id = eot
    assert alone[0] == pytest.approx(at_eot, abs=1e-5) and hf_default != pytest.approx(at_eot, abs=1e-3)


def test_ranked_responses_give_all_pairs_best_first_and_ties_none(jsonl):
    rows = [{"prompt": "p", "responses": ["best", "good", "ok", "bad"]},
            {"prompt": "q", "responses": [{"text": "a", "rank": 2}, {"text": "b", "rank": 1}, {"text": "c", "rank": 2}]},
            {"prompt": "r", "responses": [{"text": "x", "score": 0.5}, {"text": "y", "score": 2}, {"text": "z", "score": 2}]}]
    loaded = data.load_pairs(jsonl("ranked.jsonl", rows))
    got = [(v["chosen"][0]["content"], v["rejected"][0]["content"], v["group"]) for v in loaded.values()]
    assert got[:6] == [("best", "good", 0), ("best", "ok", 0), ("best", "bad", 0), ("good", "ok", 0),
                       ("good", "bad", 0), ("ok", "bad", 0)]  # K=4 -> K(K-1)/2 = 6 pairs, better one chosen
    assert got[6:8] == [("b", "a", 1), ("b", "c", 1)]  # a and c tie: no pair between them
    assert got[8:] == [("y", "x", 2), ("z", "x", 2)]  # a higher score is better; y and z tie
    assert loaded.skipped["ties"] == 2
    assert all(v["prompt"] == [{"role": "user", "content": p}] for v, p in zip(loaded.values(), "pppppp" "qq" "rr"))


def test_a_ranked_prompt_is_encoded_once_per_response(tiny_model, jsonl):
    loaded = data.load_pairs(jsonl("ranked.jsonl", [{"prompt": "p", "responses": ["a b", "c d", "e f", "g h"]}]))
    tok = models.load_tokenizer(tiny_model)
    groups, counts = rm.encode_groups(loaded, tok, 128, "left")
    assert len(groups) == 1 and len(groups[0].sequences) == 4 and counts["pairs"] == 6
    batch = rm.collate_groups(groups, tok.pad_token_id)
    assert batch["input_ids"].shape[0] == 4  # 4 sequences for 6 comparisons
    loss, diff = rm.bradley_terry(torch.tensor([3.0, 2.0, 1.0, 0.0]), batch, 0.0)
    assert diff.tolist() == [1.0, 2.0, 3.0, 1.0, 2.0, 1.0]
    sums = torch.tensor([5.0, 4, 3, 3, 2, 1])  # r_chosen + r_rejected of the 6 pairs
    expected = -F.logsigmoid(diff).mean() + 0.5 * (sums ** 2).mean()
    assert float(rm.bradley_terry(torch.tensor([3.0, 2.0, 1.0, 0.0]), batch, 0.5)[0]) == pytest.approx(float(expected))


def test_a_pair_margin_reaches_the_loss(tiny_model, jsonl):
    loaded = data.load_pairs(jsonl("m.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b", "margin": 2},
                                               {"prompt": "q", "chosen": "c", "rejected": "d"}]))
    batch = rm.collate_groups(rm.encode_groups(loaded, models.load_tokenizer(tiny_model), 64, "left")[0], 0)
    assert batch["margin"].tolist() == [2.0, 0.0]
    loss, _ = rm.bradley_terry(torch.tensor([1.0, 0.0, 1.0, 0.0]), batch, 0.0)
    assert float(loss) == pytest.approx(float(-(F.logsigmoid(torch.tensor(-1.0)) + F.logsigmoid(torch.tensor(1.0))) / 2))


def test_micro_batches_keep_groups_whole_within_the_token_budget_and_weigh_their_pairs(tiny_model, jsonl):
    rows = preference_pairs(10, 3)
    loaded = data.load_pairs([jsonl("p.jsonl", rows), jsonl("r.jsonl", ranked_rows(4, 4))])
    groups, _ = rm.encode_groups(loaded, models.load_tokenizer(tiny_model), 128, "left")
    parts = rm.micro_batches(groups, 60)
    assert len(parts) > 2 and sorted(map(id, sum(parts, []))) == sorted(map(id, groups))  # each group once, whole
    for part in parts:  # within the budget, unless one group alone is over it
        width, n = max(len(s) for g in part for s in g.sequences), sum(len(g.sequences) for g in part)
        assert width * n <= 60 or len(part) == 1
    micro = rm.collate(0, 60, [groups])["micro"]
    assert [m["input_ids"].numel() for m in micro] == [max(len(s) for g in p for s in g.sequences)
                                                        * sum(len(g.sequences) for g in p) for p in parts]
    assert [m["weight"] for m in micro] == pytest.approx([len(m["chosen"]) / 18 for m in micro])  # 10 + 4 x 2 pairs
    assert rm.collate(0, 0, [groups])["micro"][0]["weight"] == 1.0 and len(rm.micro_batches(groups, 0)) == 1


def test_micro_batched_training_equals_the_whole_batch(tiny_model, tmp_path):
    """The same steps with the batch split into micro-batches give the same adapter (to float tolerance)."""
    files = [write_jsonl(tmp_path / "pairs.jsonl", preference_pairs(48, 5)),
             write_jsonl(tmp_path / "ranked.jsonl", ranked_rows(8, 6))]
    outs = {}
    for tokens in (0, 96):
        # fp32: the property is equal gradients; in bf16 the two batchings round differently (loss off by ~1e-3)
        manifest = rm.run(rm_cfg(tiny_model, files, tmp_path / f"run{tokens}", epochs=1, batch_size=16,
                                 micro_batch_tokens=tokens, lora_dropout=0.0, dtype="fp32"))
        outs[tokens] = manifest["metrics"]
        with safe_open(str(tmp_path / f"run{tokens}" / "adapter" / "adapter_model.safetensors"), "pt") as f:
            outs[tokens]["weights"] = {k: f.get_tensor(k) for k in f.keys()}
    assert outs[0]["steps"] == outs[96]["steps"] == 4
    assert outs[0]["loss_end"] == pytest.approx(outs[96]["loss_end"], rel=1e-4)
    for k, w in outs[0]["weights"].items():
        torch.testing.assert_close(outs[96]["weights"][k], w, atol=1e-4, rtol=1e-3)


def test_hh_rlhf_dialogues_split_at_the_last_assistant_turn(jsonl):
    chosen = ("\n\nHuman: What is a cat?\n\nAssistant: An animal.\n\nHuman: Is it big?\n\nAssistant: "
              "No, a cat is small.")
    rejected = "\n\nHuman: What is a cat?\n\nAssistant: An animal.\n\nHuman: Is it big?\n\nAssistant: Go away."
    same = "Human: Hi\n\nAssistant: Hello."  # no leading blank line: as some copies of the data have it
    loaded = data.load_pairs(jsonl("hh.jsonl", [{"chosen": chosen, "rejected": rejected},
                                                {"chosen": same, "rejected": same},
                                                {"chosen": same, "rejected": "\n\nHuman: Hi\n\nAssistant: Go."}]))
    first, second = loaded.values()
    assert first["prompt"] == [{"role": "user", "content": "What is a cat?"}, {"role": "assistant", "content": "An animal."},
                               {"role": "user", "content": "Is it big?"}]
    assert first["chosen"] == [{"role": "assistant", "content": "No, a cat is small."}]
    assert first["rejected"] == [{"role": "assistant", "content": "Go away."}]
    assert second["prompt"] == [{"role": "user", "content": "Hi"}] and second["rejected"][0]["content"] == "Go."
    assert loaded.skipped == {"chosen equals rejected": 1} and [r.row for r in loaded.rows] == [1, 3]


@pytest.mark.parametrize("rows, message", [
    ([{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": "a"}],
     "row 2, field 'rejected': missing field (this file is in pairs format)"),
    ([{"prompt": "p", "responses": ["only one"]}],
     "row 1, field 'responses': a ranking needs at least two responses, got 1"),
    ([{"prompt": "p", "responses": [{"text": "a", "rank": 1}, {"text": "b", "rank": "second"}]}],
     "row 1, field 'responses[1].rank': expected a number, got 'second'"),
    ([{"prompt": "p", "responses": [{"text": "a", "rank": 1}, {"text": "b", "score": 3}]}],
     "row 1, field 'responses': mixes rank and score; use one way of ranking per row (all listed best -> worst, "
     "all with 'rank', or all with 'score')"),
    ([{"chosen": "no dialogue here", "rejected": "x"}],
     "row 1, field 'chosen': not an HH-RLHF dialogue ('\\n\\nHuman: ...\\n\\nAssistant: ...')"),
])
def test_bad_comparisons_are_refused_with_their_location_before_any_model_loads(rows, message, jsonl, tmp_path):
    path = jsonl("bad.jsonl", rows)
    with pytest.raises(DataError) as e:
        data.load_pairs(path)
    assert str(e.value) == f"{path}, {message}"
    # a model path that does not exist: the data error must come first
    result = runner.invoke(app, ["rm", "--model", str(tmp_path / "no-model"), "--data", path, "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and f"error: {path}, {message}" in result.output
    assert not (tmp_path / "o").exists()


def test_bad_truncation_is_a_config_error(tmp_path, jsonl):
    with pytest.raises(ConfigError, match="truncation must be 'left' or 'drop', got 'middle'"):
        config.build(config.RMConfig, flags={"truncation": "middle"})
    path = jsonl("p.jsonl", preference_pairs(2, 0))
    result = runner.invoke(app, ["rm", "--model", "x", "--data", path, "--output", str(tmp_path / "o"), "--truncation", "middle"])
    assert result.exit_code == 2 and not (tmp_path / "o").exists()


def test_over_long_pairs_keep_their_end_or_are_dropped_and_counted(tiny_model, jsonl):
    tok = models.load_tokenizer(tiny_model)
    long_prompt, long_answer = "the cat sat on the mat " * 40, "red " * 60
    loaded = data.load_pairs(jsonl("p.jsonl", [{"prompt": long_prompt, "chosen": "banana", "rejected": "red"},
                                               {"prompt": "hi", "chosen": "banana", "rejected": "red"},
                                               {"prompt": "hi", "chosen": long_answer, "rejected": "red"}]))
    groups, counts = rm.encode_groups(loaded, tok, 48, "left")
    assert counts == {"pairs": 2, "truncated_pairs": 1, "dropped_pairs": 1}  # an answer over 48 cannot be kept
    cut = groups[0].sequences[0]
    full = chat.conversation_ids(tok, [{"role": "user", "content": long_prompt}], [{"role": "assistant", "content": "banana"}])
    assert len(cut) == 48 and cut[0] == tok.bos_token_id and cut[1:] == full[-47:]  # the end, a BOS kept
    prompt = [{"role": "user", "content": long_prompt}]
    manifest = {"config": {"max_length": 48}}  # scoring cuts exactly as training did
    assert reward_model.encode_for_scoring(tok, [prompt], ["banana"], manifest)["input_ids"][0].tolist() == cut
    groups, counts = rm.encode_groups(loaded, tok, 48, "drop")
    assert counts == {"pairs": 1, "truncated_pairs": 0, "dropped_pairs": 2} and len(groups) == 1


def test_trains_in_two_processes(tiny_model, tmp_path):
    """Under DDP the loss must go through the wrapped model's forward (gradients are synchronised there)."""
    from test_distributed import torchrun

    write_jsonl(tmp_path / "p.jsonl", preference_pairs(64, 0))
    done = torchrun(["rm", "--model", tiny_model, "--data", str(tmp_path / "p.jsonl"), "--eval-data",
                     str(tmp_path / "p.jsonl"), "--batch-size", "8", "--max-steps", "3", "--eval-steps", "2",
                     "--output", str(tmp_path / "rm2")], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((tmp_path / "rm2" / "align.json").read_text())
    assert manifest["status"] == "complete" and manifest["metrics"]["steps"] == 3 and "eval_accuracy" in manifest["metrics"]


@pytest.mark.skipif(not HH_DATA.exists(), reason="no shared HH-RLHF sample")
def test_real_hh_files_parse_every_row():
    for name, rows in (("hh_helpful_online_test.jsonl.gz", 1137), ("hh_helpful_rejection_sampled_test.jsonl.gz", 2749)):
        loaded = data.load_pairs(str(HH_DATA / name))
        assert len(loaded.rows) + sum(loaded.skipped.values()) == rows
        assert len(loaded.rows) > 0.98 * rows  # the quirky rows are few, skipped and counted
