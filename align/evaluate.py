"""`align eval`: did alignment work? Policies are judged by a reward model against their SFT reference;
reward models by pairwise accuracy on held-out comparisons. Writes eval.json and a report (report.py).

For a policy run (DPO/PPO; SFT too) the model is loaded once as base + lineage merged + its adapter, so
"adapter disabled" is exactly the model it started from (the SFT model): its answers to the same prompts
are the baseline for the win rate, and its log-probs give the KL of the policy's answers to it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from align import chat, data, infer, models, ppo_math, runs
from align.errors import ConfigError


@torch.no_grad()
def sequence_logprob(model, tokenizer, prompt: list[dict], answer: str) -> float:
    """log p(answer + end-of-turn | prompt) under the model as it is (adapter on or off)."""
    prompt_ids = chat.encode_text(tokenizer, chat.prompt_text(tokenizer, prompt), None, None, False).input_ids
    full = chat.conversation_ids(tokenizer, prompt, [{"role": "assistant", "content": answer or " "}])
    ids = torch.tensor([full], device=next(model.parameters()).device)
    logits = model(input_ids=ids).logits[:, len(prompt_ids) - 1: -1].float()
    return float(ppo_math.logprobs_from_logits(logits, ids[:, len(prompt_ids):]).sum())


def evaluate_policy(run_dir: str, prompts: list[list[dict]], judge, max_new_tokens: int) -> dict[str, Any]:
    model, tok, manifest = models.load_run(run_dir, merge=False)
    if manifest.get("full"):
        raise ConfigError(f"{run_dir}: a full fine-tuning run has no adapter to switch off, so its reference "
                          "cannot be recovered from it; evaluate LoRA runs, or compare against a separate judge")
    answers = infer.generate(model, tok, prompts, max_new_tokens)
    with model.disable_adapter():
        reference = infer.generate(model, tok, prompts, max_new_tokens)
    kl = []
    for p, a in zip(prompts, answers):
        policy_lp = sequence_logprob(model, tok, p, a)
        with model.disable_adapter():
            kl.append(policy_lp - sequence_logprob(model, tok, p, a))
    result: dict[str, Any] = {
        "run": run_dir, "stage": manifest["stage"], "kind": "policy",
        "reference": manifest["lineage"].get("from") or manifest["lineage"]["base"],
        "kl_to_reference": sum(kl) / len(kl),
        "response_length": sum(len(tok(a)["input_ids"]) for a in answers) / len(answers),
        "samples": [{"prompt": p[-1]["content"], "policy": a, "reference": r}
                    for p, a, r in list(zip(prompts, answers, reference))[:5]]}
    if judge is not None:
        runs.check_same_template(judge.manifest, manifest, f"judge for {run_dir}")
        mine, theirs = judge.score(prompts, answers), judge.score(prompts, reference)
        result.update(reward=sum(mine) / len(mine), reference_reward=sum(theirs) / len(theirs),
                      win_rate=sum((a > b) + 0.5 * (a == b) for a, b in zip(mine, theirs)) / len(mine))
        for s, a, b in zip(result["samples"], mine, theirs):
            s.update(policy_reward=a, reference_reward=b)
    return result


def evaluate_rm(run_dir: str, pairs_path: str) -> dict[str, Any]:
    from align import rm

    scorer = rm.load_reward_model(run_dir)
    vals = data.load_pairs(pairs_path).values()
    chosen = scorer.score([v["prompt"] for v in vals], [v["chosen"] for v in vals])
    rejected = scorer.score([v["prompt"] for v in vals], [v["rejected"] for v in vals])
    return {"run": run_dir, "stage": "rm", "kind": "reward_model", "pairs": len(vals),
            "accuracy": sum(c > r for c, r in zip(chosen, rejected)) / len(vals),
            "mean_margin": sum(c - r for c, r in zip(chosen, rejected)) / len(vals)}


def evaluate(run_dirs: list[str], prompts_path: str | None, judge_dir: str | None, pairs_path: str | None,
             output: str | None, max_new_tokens: int = 64) -> dict[str, Any]:
    from align import report, rm

    manifests = {d: runs.read_manifest(d, require_complete=True) for d in run_dirs}
    policies = [d for d, m in manifests.items() if m["stage"] != "rm"]
    rms = [d for d, m in manifests.items() if m["stage"] == "rm"]
    if policies and not prompts_path:
        raise ConfigError("evaluating a policy needs held-out prompts: pass --prompts FILE")
    if rms and not pairs_path:
        raise ConfigError("evaluating a reward model needs held-out comparisons: pass --pairs FILE")
    judge_dir = judge_dir or (rms[0] if rms else None)
    prompts = [v["prompt"] for v in data.load_prompts(prompts_path).values()] if policies else []
    judge = rm.load_reward_model(judge_dir) if judge_dir and policies else None
    results = [evaluate_rm(d, pairs_path) for d in rms]
    for d in policies:
        print(f"[align] evaluating {d} on {len(prompts)} prompts", flush=True)
        results.append(evaluate_policy(d, prompts, judge, max_new_tokens))
    out = {"judge": judge_dir, "prompts": prompts_path, "pairs": pairs_path, "results": results}
    if output:
        Path(output).mkdir(parents=True, exist_ok=True)
        runs.write_json_atomic(Path(output) / "eval.json", out)
        path = report.write(out, manifests, Path(output))
        print(f"[align] report: {path}", flush=True)
    print(report.tables(out), flush=True)
    return out
