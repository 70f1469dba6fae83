"""`align eval`: did alignment work? Policies are judged by a reward model against their SFT reference;
reward models by pairwise accuracy on held-out comparisons. Writes eval.json and a report (report.py).

For a policy run (DPO/PPO; SFT too) the model is loaded once as base + lineage merged + its adapter, so
"adapter disabled" is exactly the model it started from (the SFT model): its answers to the same prompts
are the baseline for the win rate, and its log-probs give the KL of the policy's answers to it.
"""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path
from typing import Any

import torch

from align import chat, data, infer, models, ppo_math, reward_model, runs
from align.errors import ConfigError

LOGPROB_TOKENS = 4096  # padded tokens per log-prob pass (the LM head's logits are kept for answer positions only)


@torch.no_grad()
def sequence_logprobs(model, tokenizer, prompts: list[list[dict]], answers: list[str],
                      max_tokens: int = LOGPROB_TOKENS, max_prompt_length: int | None = None) -> list[float]:
    """log p(answer + end-of-turn | prompt) of each answer under the model as it is (adapter on or off), in
    their order; a prompt over `max_prompt_length` keeps its last tokens, as the answer was generated from.
    Batches of similar length (infer.length_batches), left-padded so that the answers end together: the LM
    head runs on the last positions only, where the model supports `logits_to_keep`."""
    rows = []  # (conversation ids, answer length)
    for p, a in zip(prompts, answers):
        ids = chat.conversation_ids(tokenizer, p, [{"role": "assistant", "content": a or " "}])
        n = len(chat.prompt_ids(tokenizer, p))
        rows.append((chat.truncate_left(tokenizer, ids[:n], max_prompt_length) + ids[n:], len(ids) - n))
    device = next(model.parameters()).device
    keep_only = "logits_to_keep" in inspect.signature(models.unwrap(model).forward).parameters
    out = [0.0] * len(rows)
    for idx in infer.length_batches([len(ids) for ids, _ in rows], max_tokens):
        enc = {k: t.to(device) for k, t in infer.pad_left([rows[i][0] for i in idx], tokenizer.pad_token_id).items()}
        k = max(rows[i][1] for i in idx)  # the longest answer: its tokens and the one before it are needed
        extra = {"logits_to_keep": k + 1} if keep_only else {}
        logits = model(**enc, position_ids=(enc["attention_mask"].cumsum(-1) - 1).clamp(min=0), use_cache=False,
                       **extra).logits[:, -k - 1: -1]
        logprobs = ppo_math.logprobs_from_logits(logits, enc["input_ids"][:, -k:])
        lengths = torch.tensor([rows[i][1] for i in idx], device=device)
        answer = torch.arange(k, device=device) >= k - lengths[:, None]  # a shorter row's front may be padding
        for i, lp in zip(idx, logprobs.masked_fill(~answer, 0.0).sum(-1).tolist()):
            out[i] = lp
    return out


def win_rate(mine: list[float], theirs: list[float]) -> tuple[float, float]:
    """(share of prompts whose answer the judge scores higher, a tie counting half; its standard error over
    prompts): with 40 prompts a 0.6 is 0.6 +- 0.15 (95%), and the report says so."""
    outcomes = [(a > b) + 0.5 * (a == b) for a, b in zip(mine, theirs)]
    n, mean = len(outcomes), sum(outcomes) / len(outcomes)
    var = sum((o - mean) ** 2 for o in outcomes) / max(n - 1, 1)
    return mean, (var / n) ** 0.5


def answer_lengths(tokenizer, answers: list[str]) -> float:
    return sum(len(tokenizer(a)["input_ids"]) for a in answers) / len(answers)


def judged(judge, prompts: list[list[dict]], answers: list[str], reference: dict[str, Any]) -> list[float]:
    """The judge's score of each answer. The reference's answers were scored in another call, batched and padded
    otherwise: an answer identical to the reference's takes its score, a tie, not a win or loss by float noise."""
    return [ref if a == ref_a else s for s, a, ref, ref_a in
            zip(judge.score(prompts, answers), answers, reference["scores"], reference["answers"])]


def versus_reference(model, tok, prompts: list[list[dict]], max_new_tokens: int, judge, reference: dict[str, Any],
                     max_prompt_length: int | None = None) -> dict[str, Any]:
    """The active adapter's greedy answers against the reference's (adapters disabled): KL of its answers to
    the reference (nats per answer), and under the judge its mean reward and win rate, with lengths."""
    answers = infer.generate(model, tok, prompts, max_new_tokens, max_prompt_length=max_prompt_length)
    policy_lp = sequence_logprobs(model, tok, prompts, answers, max_prompt_length=max_prompt_length)
    with model.disable_adapter():
        reference_lp = sequence_logprobs(model, tok, prompts, answers, max_prompt_length=max_prompt_length)
    kl = [a - b for a, b in zip(policy_lp, reference_lp)]
    out = {"kl_to_reference": sum(kl) / len(kl), "response_length": answer_lengths(tok, answers),
           "reference_length": reference["length"], "answers": answers}
    if judge is not None:
        mine = judged(judge, prompts, answers, reference)
        rate, se = win_rate(mine, reference["scores"])
        out.update(reward=sum(mine) / len(mine), reference_reward=sum(reference["scores"]) / len(mine),
                   win_rate=rate, win_rate_se=se, scores=mine)
    return out


def evaluate_policy(run_dir: str, prompts: list[list[dict]], judge, max_new_tokens: int,
                    references: dict[str, dict] | None = None, max_prompt_length: int | None = None) -> dict[str, Any]:
    """A policy run against the model it started from; for a PPO run with snapshots, also each snapshot (the
    judge-reward-vs-KL curve over training). `references` keeps each reference's greedy answers and scores, so
    policies trained from the same model (PPO and DPO from one SFT run) generate its answers once. Prompts
    over `max_prompt_length` tokens keep their last ones (as PPO and DPO cut them in training)."""
    model, tok, manifest = models.load_run(run_dir, merge=False)
    if manifest.get("full"):
        raise ConfigError(f"{run_dir}: a full fine-tuning run has no adapter to switch off, so its reference "
                          "cannot be recovered from it; evaluate LoRA runs, or compare against a separate judge")
    if judge is not None:
        runs.check_same_template(judge.manifest, manifest, f"judge for {run_dir}")
    key = json.dumps([manifest["lineage"]["base"], manifest["lineage"]["adapters"], max_new_tokens, max_prompt_length])
    references = {} if references is None else references
    if key not in references:
        with model.disable_adapter():
            answers = infer.generate(model, tok, prompts, max_new_tokens, max_prompt_length=max_prompt_length)
        references[key] = {"answers": answers, "length": answer_lengths(tok, answers),
                           "scores": judge.score(prompts, answers) if judge is not None else None}
    reference = references[key]
    cut = chat.count_long_prompts(tok, prompts, max_prompt_length) if max_prompt_length is not None else 0
    if cut:
        print(f"[align] {cut} of {len(prompts)} prompts over max_prompt_length {max_prompt_length}: their last "
              "tokens kept", flush=True)
    curve = []
    for step, path in snapshots(run_dir):
        print(f"[align] {run_dir}: snapshot after {step} iterations", flush=True)
        model.load_adapter(str(path), adapter_name="snapshot")
        model.set_adapter("snapshot")
        models.run_in(model, models.compute_dtype("auto"))
        point = versus_reference(model, tok, prompts, max_new_tokens, judge, reference, max_prompt_length)
        curve.append({"step": step, **{k: v for k, v in point.items() if k not in ("answers", "scores")}})
        model.set_adapter("default")
        model.delete_adapter("snapshot")
    final = versus_reference(model, tok, prompts, max_new_tokens, judge, reference, max_prompt_length)
    answers, scores = final.pop("answers"), final.pop("scores", None)
    if curve:
        curve.append({"step": manifest["config"].get("steps"), **final})
    samples = [{"prompt": p[-1]["content"], "policy": a, "reference": r}
               for p, a, r in list(zip(prompts, answers, reference["answers"]))[:5]]
    for s, a, b in zip(samples, scores or [], reference["scores"] or []):
        s.update(policy_reward=a, reference_reward=b)
    return {"run": run_dir, "stage": manifest["stage"], "kind": "policy",
            "reference": manifest["lineage"].get("from") or manifest["lineage"]["base"], "truncated_prompts": cut,
            **final,
            "curve": curve, "samples": samples}


def snapshots(run_dir: str) -> list[tuple[int, Path]]:
    """(iterations, adapter folder) of a PPO run's kept snapshots, in order."""
    found = [(int(p.name.split("-")[1]), p) for p in (Path(run_dir) / "snapshots").glob("step-*")
             if (p / "adapter_config.json").exists()]
    return sorted(found)


def score_pairs(scorer: reward_model.RewardModel, pairs: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """(chosen rewards, rejected rewards) of comparison rows, in one scoring pass (a response that recurs, as a
    ranking's do, is scored once)."""
    n = len(pairs)
    scores = scorer.score([v["prompt"] for v in pairs] * 2,
                          [v["chosen"] for v in pairs] + [v["rejected"] for v in pairs])
    return scores[:n], scores[n:]


def evaluate_rm(run_dir: str, pairs_path: str) -> dict[str, Any]:
    pairs = data.load_pairs(pairs_path).values()
    chosen, rejected = score_pairs(reward_model.load_reward_model(run_dir), pairs)
    return {"run": run_dir, "stage": "rm", "kind": "reward_model", "pairs": len(pairs),
            **reward_model.pair_metrics([c - r for c, r in zip(chosen, rejected)])}


def score_file(run_dir: str, path: str, output: str | None, overwrite: bool = False) -> dict[str, Any]:
    """`align score`: a reward per prompt/response row, or chosen/rejected rewards per comparison pair
    (with the pairwise accuracy). The file and the output are checked before the model loads."""
    output = runs.check_output_file(output, overwrite) if output else None
    pairs = data.is_comparison_file(path)
    loaded = data.load_pairs(path) if pairs else data.load_sft(path)  # any SFT format that ends with an answer
    turns = []  # (prompt, answer) of each prompt/response row, checked before the model loads
    for row in loaded.rows:
        if "text" in row.value:
            raise row.error("plain text has no prompt/response turns to score: give prompt/response or messages",
                            "text")
        if not pairs:
            turns.append(data.split_last_turn(row.value["messages"], (row.file, row.row), "messages"))
    scorer = reward_model.load_reward_model(run_dir)
    result: dict[str, Any] = {"rows": len(loaded.rows)}
    if pairs:
        chosen, rejected = score_pairs(scorer, loaded.values())
        lines = [{"row": row.row, "chosen_reward": c, "rejected_reward": r}
                 for row, c, r in zip(loaded.rows, chosen, rejected)]
        result.update(reward_model.pair_metrics([c - r for c, r in zip(chosen, rejected)]))
    else:
        scores = scorer.score([p for p, _ in turns], [a for _, a in turns])
        lines = [{"row": row.row, "reward": s} for row, s in zip(loaded.rows, scores)]
        result["mean_reward"] = sum(scores) / len(scores)
    text = "".join(json.dumps(x) + "\n" for x in lines)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        runs.write_text_atomic(output, text)
    else:
        print(text, end="")
    return result


def evaluate_runs(run_dirs: list[str], prompts_path: str | None, judge_dir: str | None, pairs_path: str | None,
                  output: str | None, max_new_tokens: int = 64, comparison_prompts: bool = False,
                  overwrite: bool = False, max_prompt_length: int | None = None) -> dict[str, Any]:
    """`align eval`: each policy against its reference and each reward model on held-out pairs -> eval.json,
    report.md and plots in `output`, a folder filled aside and renamed (an earlier report is replaced only
    with --overwrite, and only if align wrote it)."""
    from align import report

    if output:
        output = runs.check_replaceable(output, overwrite, runs.REPORT_MARKER, "evaluation report")
    manifests = {d: runs.read_manifest(d, require_complete=True) for d in run_dirs}
    policies = [d for d, m in manifests.items() if m["stage"] != "rm"]
    rms = [d for d, m in manifests.items() if m["stage"] == "rm"]
    if policies and not prompts_path:
        raise ConfigError("evaluating a policy needs held-out prompts: pass --prompts FILE")
    if rms and not pairs_path:
        raise ConfigError("evaluating a reward model needs held-out comparisons: pass --pairs FILE")
    judge_dir = judge_dir or (rms[0] if rms else None)
    started = time.monotonic()
    prompts = [v["prompt"] for v in data.load_prompts(prompts_path, comparison_prompts).values()] if policies else []
    judge = reward_model.load_reward_model(judge_dir) if judge_dir and policies else None
    results, references = [evaluate_rm(d, pairs_path) for d in rms], {}
    for d in policies:
        print(f"[align] evaluating {d} on {len(prompts)} prompts", flush=True)
        results.append(evaluate_policy(d, prompts, judge, max_new_tokens, references, max_prompt_length))
    out = {"align_eval": 1, "judge": judge_dir, "prompts": prompts_path, "pairs": pairs_path, "results": results,
           "max_prompt_length": max_prompt_length, "wall_s": time.monotonic() - started}
    if output:
        with runs.atomic_dir(output) as tmp:
            runs.write_json_atomic(tmp / runs.REPORT_MARKER, out)
            report.write(out, manifests, tmp)
        print(f"[align] report: {output / 'report.md'}", flush=True)
    print(report.tables(out), flush=True)
    return out
