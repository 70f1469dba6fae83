"""Direct preference optimisation: train the SFT policy straight on preference pairs (Rafailov et al. 2023).

Read and validate comparisons (the same loader as the RM stage: pairs, HH-RLHF dialogues, rankings) ->
tokenise prompt / chosen / rejected ourselves with the chat template (responses end at their end-of-turn
token; over-long prompts keep their end) -> claim the run directory -> base + SFT lineage merged, fresh
LoRA on top, so the reference (TRL's frozen copy of the zero-initialised adapter) is the SFT model
exactly -> TRL's DPOTrainer -> eval implicit-reward accuracy and margins before and after -> optional
judging of greedy answers by a reward model.
"""

from __future__ import annotations

from typing import Any

from align import chat, data, models, train
from align.config import DPOConfig, to_dict
from align.errors import ConfigError, DataError
from align.runs import Run

SMOOTHED_LOSSES = {"sigmoid", "robust", "exo_pair", "bco_pair"}  # where TRL 1.16 reads label_smoothing


def encode_pair(tokenizer, v: dict[str, Any], cfg: DPOConfig, counts: dict[str, int]) -> dict[str, list[int]]:
    """prompt_ids / chosen_ids / rejected_ids, split at the token level (never by characters)."""
    prompt = chat.encode_text(tokenizer, chat.prompt_text(tokenizer, v["prompt"]), None, None, False).input_ids
    out = {}
    for side in ("chosen", "rejected"):
        full = chat.conversation_ids(tokenizer, v["prompt"], v[side])
        n = next((i for i, (a, b) in enumerate(zip(prompt, full)) if a != b), min(len(prompt), len(full)))
        out[f"{side}_ids"] = full[n:]
    prompt_ids = prompt[-cfg.max_prompt_length:]
    counts["truncated_prompts"] += len(prompt_ids) < len(prompt)
    room = cfg.max_length - len(prompt_ids)
    for side in ("chosen_ids", "rejected_ids"):
        if len(out[side]) > room:
            counts["truncated_responses"] += 1
            out[side] = out[side][:room]
    return {"prompt_ids": prompt_ids, **out}


def encode_pairs(loaded: data.Loaded, tokenizer, cfg: DPOConfig) -> tuple[list[dict], dict[str, int]]:
    if cfg.max_prompt_length >= cfg.max_length:
        raise ConfigError("max_prompt_length must be below max_length (room is needed for the response)")
    counts = {"pairs": len(loaded.rows), "truncated_prompts": 0, "truncated_responses": 0}
    return [encode_pair(tokenizer, row.value, cfg, counts) for row in loaded.rows], counts


def trl_loss(cfg: DPOConfig) -> dict[str, Any]:
    """Our flat options -> TRL's loss settings (RPO = the chosen NLL added with a weight)."""
    if cfg.label_smoothing and cfg.loss_type not in SMOOTHED_LOSSES:
        raise ConfigError(f"label_smoothing has no effect with loss_type '{cfg.loss_type}' "
                          f"(it applies to {', '.join(sorted(SMOOTHED_LOSSES))})")
    loss = {"loss_type": [cfg.loss_type], "beta": cfg.beta, "label_smoothing": cfg.label_smoothing}
    if cfg.sft_loss_weight:
        loss.update(loss_type=[cfg.loss_type, "sft"], loss_weights=[1.0, cfg.sft_loss_weight])
    return loss


def judge(cfg: DPOConfig, policy, tokenizer, prompts: list[list[dict]]) -> dict[str, float]:
    """Mean reward of the policy's and the reference's greedy answers under a reward model."""
    from align import infer, rm

    scorer = rm.load_reward_model(cfg.judge)
    policy.eval()
    answers = infer.generate(policy, tokenizer, prompts, cfg.judge_max_new_tokens)
    with policy.disable_adapter():
        reference = infer.generate(policy, tokenizer, prompts, cfg.judge_max_new_tokens)
    after, before = scorer.score(prompts, answers), scorer.score(prompts, reference)
    return {"judge_reward_policy": sum(after) / len(after), "judge_reward_reference": sum(before) / len(before),
            "judge_win_rate": sum(a > b for a, b in zip(after, before)) / len(after)}


def run(cfg: DPOConfig) -> dict[str, Any]:
    from datasets import Dataset
    from trl import DPOConfig as TRLDPOConfig
    from trl import DPOTrainer

    class PreTokenizedDPOTrainer(DPOTrainer):
        """TRL's DPO on rows we tokenised ourselves (prompt/response split at the token level)."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

    # 1. Validate and tokenise before a model or run directory exists.
    train_rows = data.load_pairs(cfg.data)
    eval_rows = data.load_pairs(cfg.eval_data) if cfg.eval_data else None
    if cfg.judge and not eval_rows:
        raise ConfigError("--judge scores answers to the eval prompts: pass --eval-data too")
    loss = trl_loss(cfg)
    lineage, tokenizer = models.tokenizer_for(cfg)
    train_set, counts = encode_pairs(train_rows, tokenizer, cfg)
    eval_set, eval_counts = encode_pairs(eval_rows, tokenizer, cfg) if eval_rows else (None, {})
    if not train_set:
        raise DataError(cfg.data[0], "no usable preference pairs")
    print(f"[align] {counts['pairs']} training pairs; " + ", ".join(
        f"{k}: {v}" for k, v in {**train_rows.skipped, **counts}.items() if k != "pairs"), flush=True)

    with Run.open(cfg.output, "dpo", cfg.overwrite, cfg.resume) as out:
        out.start(to_dict(cfg), data={"train": train_rows.files, "eval": eval_rows.files if eval_rows else [],
                                      "counts": {"train": {**counts, **train_rows.skipped}, "eval": eval_counts}})
        model = models.prepare(cfg, "causal", lineage, tokenizer)
        args = train.trainer_args(cfg, out, TRLDPOConfig, max_length=cfg.max_length,
                                  precompute_ref_log_probs=cfg.precompute_ref_log_probs, **loss)
        trainer = PreTokenizedDPOTrainer(model=model, args=args, processing_class=tokenizer,
                                         train_dataset=Dataset.from_list(train_set),
                                         eval_dataset=Dataset.from_list(eval_set) if eval_set else None)
        train.use_our_callbacks(trainer, out)
        before = {f"before_{k}": v for k, v in trainer.evaluate().items()} if eval_set and not cfg.resume else {}
        train_out = train.fit(trainer, out, cfg.resume)
        metrics = {**train.standard_metrics(trainer, train_out), **before}
        if eval_set:
            metrics.update(trainer.evaluate())
            metrics["eval_implicit_accuracy"] = metrics.get("eval_rewards/accuracies")
        if cfg.judge:
            metrics.update(judge(cfg, trainer.model, tokenizer, [r.value["prompt"] for r in eval_rows.rows]))
        train.save_model(trainer.model, tokenizer, out, cfg.full)
        out.write(**train.model_fields(cfg, tokenizer, lineage, "causal"))
        out.finish(metrics)
    print(train.summarise(out, metrics), flush=True)
    return out.manifest
