"""Reward model: comparison formats, learning a preference, exact reloads, scoring at the end-of-turn token."""

from __future__ import annotations

import json
import random

import pytest
import torch
from typer.testing import CliRunner

from align import config, data, models, rm
from align.cli import app
from align.errors import DataError

from conftest import WORDS

runner = CliRunner()
PLAIN = [w for w in WORDS if w != "banana"]


def preference_pairs(n: int, seed: int) -> list[dict]:
    """Responses that mention 'banana' are preferred; everything else is random words."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = lambda k: [rng.choice(PLAIN) for _ in range(k)]  # noqa: E731
        good = words(rng.randint(3, 7))
        good.insert(rng.randint(0, len(good)), "banana")
        out.append({"prompt": "tell me about " + " ".join(words(3)), "chosen": " ".join(good),
                    "rejected": " ".join(words(rng.randint(3, 8)))})
    return out


def rm_cfg(model, train, out, **kw) -> config.RMConfig:
    base = dict(model=model, data=[train], output=str(out), epochs=5, batch_size=16, learning_rate=5e-3,
                lora_r=32, lora_alpha=32, logging_steps=10, warmup_ratio=0.0)
    base.update(kw)
    return config.build(config.RMConfig, flags=base)


@pytest.fixture(scope="module")
def trained_rm(tiny_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rm")
    (tmp / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in preference_pairs(240, 0)))
    (tmp / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in preference_pairs(60, 1)))
    manifest = rm.run(rm_cfg(tiny_model, str(tmp / "train.jsonl"), tmp / "run", eval_data=[str(tmp / "eval.jsonl")]))
    return tmp, manifest


def test_learns_the_preference_on_held_out_pairs(trained_rm):
    tmp, manifest = trained_rm
    m = manifest["metrics"]
    assert m["eval_accuracy"] > 0.9, m
    assert m["eval_mean_margin"] > 0 and m["loss_end"] < m["loss_start"]
    assert manifest["reward_norm"]["std"] > 0 and manifest["reward_norm"]["n"] == 480
    assert manifest["model_kind"] == "seq_cls"


def test_reloaded_rm_gives_identical_scores_and_score_cli_agrees(trained_rm):
    tmp, manifest = trained_rm
    pairs = [json.loads(x) for x in (tmp / "eval.jsonl").read_text().splitlines()]
    prompts = [[{"role": "user", "content": p["prompt"]}] for p in pairs]
    a = rm.load_reward_model(str(tmp / "run"))
    first = a.score(prompts, [p["chosen"] for p in pairs])
    b = rm.load_reward_model(str(tmp / "run"))  # a second load: the score head must come back from disk
    assert b.score(prompts, [p["chosen"] for p in pairs]) == first
    base = models.load_base(models.resolve(manifest["lineage"]["base"]), "seq_cls")
    fresh = rm.RewardModel(base, a.tokenizer, manifest)
    assert fresh.score(prompts[:4], [p["chosen"] for p in pairs[:4]]) != first[:4]  # the head is not the random one

    out = tmp / "scores.jsonl"
    result = runner.invoke(app, ["score", str(tmp / "run"), "--data", str(tmp / "eval.jsonl"), "--output", str(out)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["chosen_reward"] for x in lines] == pytest.approx(first, abs=1e-5)
    acc = sum(x["chosen_reward"] > x["rejected_reward"] for x in lines) / len(lines)
    assert f"accuracy {acc:.4g}" in result.output and acc == pytest.approx(manifest["metrics"]["eval_accuracy"])


def test_score_is_read_at_the_end_of_turn_not_at_padding(trained_rm):
    tmp, _ = trained_rm
    model = rm.load_reward_model(str(tmp / "run"))
    prompt = [{"role": "user", "content": "tell me about the cat"}]
    alone = model.score([prompt], ["banana red"])[0]
    batched = model.score([prompt, prompt], ["banana red", " ".join(["the cat sat on the mat"] * 8)])[0]
    assert alone == pytest.approx(batched, abs=1e-5)
    ids = rm.encode_for_scoring(model.tokenizer, [prompt], ["banana red"], model.manifest)
    eot = model.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert int(ids["input_ids"][0, ids["last_index"][0]]) == eot


def test_ranked_responses_give_all_pairs_in_order_and_ties_none(jsonl):
    rows = [{"prompt": "p", "responses": ["best", "good", "ok", "bad"]},
            {"prompt": "q", "responses": [{"text": "a", "rank": 2}, {"text": "b", "rank": 1}, {"text": "c", "rank": 2}]},
            {"prompt": "r", "responses": [{"text": "x", "score": 0.5}, {"text": "y", "score": 2}]}]
    loaded = data.load_pairs(jsonl("ranked.jsonl", rows))
    got = [(v["chosen"][0]["content"], v["rejected"][0]["content"], v["group"]) for v in loaded.values()]
    assert got[:6] == [("best", "good", 0), ("best", "ok", 0), ("best", "bad", 0), ("good", "ok", 0),
                       ("good", "bad", 0), ("ok", "bad", 0)]  # K=4 -> 6 pairs, best first
    assert got[6:8] == [("b", "a", 1), ("b", "c", 1)]  # a and c tie: no pair between them
    assert got[8:] == [("y", "x", 2)]
    assert loaded.skipped["ties"] == 1


def test_a_ranked_prompt_is_encoded_once_per_response(tiny_model, jsonl):
    loaded = data.load_pairs(jsonl("ranked.jsonl", [{"prompt": "p", "responses": ["a b", "c d", "e f", "g h"]}]))
    tok = models.load_tokenizer(tiny_model)
    groups, counts = rm.encode_groups(loaded, tok, 128, "left")
    assert len(groups) == 1 and len(groups[0].sequences) == 4 and len(groups[0].pairs) == 6
    batch = rm.collate(tok.pad_token_id, [groups])
    loss, diff = rm.bradley_terry(torch.tensor([3.0, 2.0, 1.0, 0.0]), batch, 0.0)
    assert diff.tolist() == [1.0, 2.0, 3.0, 1.0, 2.0, 1.0]


def test_hh_rlhf_dialogues_split_at_the_last_assistant_turn(jsonl):
    chosen = ("\n\nHuman: What is a cat?\n\nAssistant: An animal.\n\nHuman: Is it big?\n\nAssistant: "
              "No, a cat is small.")
    rejected = "\n\nHuman: What is a cat?\n\nAssistant: An animal.\n\nHuman: Is it big?\n\nAssistant: Go away."
    same = "\n\nHuman: Hi\n\nAssistant: Hello."
    loaded = data.load_pairs(jsonl("hh.jsonl", [{"chosen": chosen, "rejected": rejected},
                                                {"chosen": same, "rejected": same}]))
    (v,) = loaded.values()
    assert v["prompt"] == [{"role": "user", "content": "What is a cat?"}, {"role": "assistant", "content": "An animal."},
                           {"role": "user", "content": "Is it big?"}]
    assert v["chosen"] == [{"role": "assistant", "content": "No, a cat is small."}]
    assert v["rejected"] == [{"role": "assistant", "content": "Go away."}]
    assert loaded.skipped == {"chosen equals rejected": 1}


@pytest.mark.parametrize("rows, message", [
    ([{"prompt": "p", "chosen": "a"}], "bad.jsonl, row 1, field 'rejected': missing field"),
    ([{"prompt": "p", "responses": ["only one"]}],
     "bad.jsonl, row 1, field 'responses': a ranking needs at least two responses, got 1"),
    ([{"prompt": "p", "responses": [{"text": "a", "rank": "first"}, {"text": "b", "rank": 2}]}],
     "bad.jsonl, row 1, field 'rank': expected a number, got 'first'"),
    ([{"chosen": "no dialogue here", "rejected": "x"}], "bad.jsonl, row 1, field 'chosen': not an HH-RLHF dialogue"),
])
def test_bad_comparisons_exit_2_with_location(rows, message, jsonl, tmp_path, tiny_model):
    path = jsonl("bad.jsonl", rows)
    with pytest.raises(DataError) as e:
        data.load_pairs(path)
    assert message in str(e.value)
    result = runner.invoke(app, ["rm", "--model", tiny_model, "--data", path, "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "o").exists()


def test_over_long_pairs_are_truncated_from_the_left_or_dropped_and_counted(tiny_model, jsonl):
    long_prompt = "the cat sat on the mat " * 40
    loaded = data.load_pairs(jsonl("p.jsonl", [{"prompt": long_prompt, "chosen": "banana", "rejected": "red"},
                                               {"prompt": "hi", "chosen": "banana", "rejected": "red"}]))
    tok = models.load_tokenizer(tiny_model)
    groups, counts = rm.encode_groups(loaded, tok, 48, "left")
    assert counts == {"pairs": 2, "truncated_responses": 2, "dropped_pairs": 0}
    assert all(len(s) <= 48 and s[-1] == tok.convert_tokens_to_ids("<|im_end|>") for s in groups[0].sequences)
    groups, counts = rm.encode_groups(loaded, tok, 48, "drop")
    assert counts == {"pairs": 1, "truncated_responses": 0, "dropped_pairs": 1}


@pytest.mark.skipif(not __import__("pathlib").Path("../shared/data/preference").exists(), reason="no ../shared data")
def test_real_hh_files_parse():
    for name, rows in (("hh_helpful_online_test.jsonl.gz", 1137), ("hh_helpful_rejection_sampled_test.jsonl.gz", 2749)):
        loaded = data.load_pairs(f"../shared/data/preference/{name}")
        assert len(loaded.rows) + sum(loaded.skipped.values()) == rows
        assert len(loaded.rows) > 0.98 * rows  # the quirky rows are few, skipped and counted


def test_score_cli_on_prompt_response_rows(trained_rm, jsonl):
    tmp, _ = trained_rm
    rows = jsonl("answers.jsonl", [{"prompt": "tell me about the cat", "response": "banana red sky"},
                                   {"prompt": "tell me about the cat", "response": "red sky"}])
    result = runner.invoke(app, ["score", str(tmp / "run"), "--data", rows])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    assert [x["row"] for x in lines] == [1, 2]
    expected = rm.load_reward_model(str(tmp / "run")).score([[{"role": "user", "content": "tell me about the cat"}]] * 2,
                                                            ["banana red sky", "red sky"])
    assert [x["reward"] for x in lines] == pytest.approx(expected, abs=1e-5)
    assert lines[0]["reward"] > lines[1]["reward"]  # the learned preference shows
