"""Reward model (InstructGPT step 2): a scalar score for a prompt + response, learned from comparisons.

Read and validate comparisons (pairs, HH-RLHF dialogues, rankings -> pairs) -> tokenise each distinct
response of a prompt once, ending at its end-of-turn token -> claim the run directory -> base (+lineage)
as a 1-output sequence classifier with LoRA (the score head trains and is saved with the adapter) ->
Bradley-Terry loss over all pairs of a prompt in one batch element (as InstructGPT does, so K responses
are encoded once, not K-1 times) -> eval accuracy/margin -> record the reward mean/std for PPO.

The score is read at each sequence's last token, found from the attention mask. (HF's own sequence
classifiers look for the first pad token, which is wrong when pad == EOS, as in SmolLM2.)
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainingArguments

from align import chat, data, models, runs, train
from align.config import RMConfig, to_dict
from align.errors import DataError
from align.runs import Run


# --- encoding: groups of responses to one prompt ---------------------------------------------------------

@dataclass
class Group:
    """One prompt's distinct responses (token ids) and its comparisons as index pairs into them."""

    sequences: list[list[int]]
    pairs: list[tuple[int, int, float]]  # (chosen, rejected, margin)


def _truncate(ids: list[int], max_length: int, side: str) -> list[int] | None:
    if len(ids) <= max_length:
        return ids
    return ids[-max_length:] if side == "left" else None


def encode_groups(loaded: data.Loaded, tokenizer, max_length: int, truncation: str) -> tuple[list[Group], dict[str, int]]:
    """Pairs -> groups (rows sharing `group` come from one ranking or one prompt); counts what was cut."""
    if truncation not in ("left", "drop"):
        raise DataError("(config)", f"truncation must be 'left' or 'drop', not {truncation!r}")
    groups: dict[int, tuple[dict[str, int], Group]] = {}
    counts = {"pairs": 0, "truncated_responses": 0, "dropped_pairs": 0}
    for row in loaded.rows:
        v = row.value
        index, group = groups.setdefault(v["group"], ({}, Group([], [])))
        ids = []
        for side in ("chosen", "rejected"):
            key = repr(v[side])
            if key not in index:
                full = chat.conversation_ids(tokenizer, v["prompt"], v[side])
                cut = _truncate(full, max_length, truncation)
                counts["truncated_responses"] += cut is not None and len(cut) < len(full)
                index[key] = len(group.sequences) if cut is not None else -1
                if cut is not None:
                    group.sequences.append(cut)
            ids.append(index[key])
        if -1 in ids:
            counts["dropped_pairs"] += 1
            continue
        group.pairs.append((ids[0], ids[1], v["margin"] or 0.0))
        counts["pairs"] += 1
    return [g for _, g in groups.values() if g.pairs], counts


def batches_of(groups: list[Group], pairs_per_batch: int, seed: int) -> list[list[Group]]:
    """Whole groups per batch, about `pairs_per_batch` pairs each (a bigger group makes its own batch)."""
    order = random.Random(seed).sample(groups, len(groups))
    out, current, n = [], [], 0
    for g in order:
        if current and n + len(g.pairs) > pairs_per_batch:
            out.append(current)
            current, n = [], 0
        current.append(g)
        n += len(g.pairs)
    return out + ([current] if current else [])


def collate(pad_id: int, batch: list[list[Group]]) -> dict[str, torch.Tensor]:
    """One pre-built batch of groups -> right-padded sequences + pair indices into them."""
    (groups,) = batch
    seqs, chosen, rejected, margin = [], [], [], []
    for g in groups:
        base = len(seqs)
        seqs += g.sequences
        for c, r, m in g.pairs:
            chosen.append(base + c)
            rejected.append(base + r)
            margin.append(m)
    width = max(map(len, seqs))
    return {"input_ids": torch.tensor([s + [pad_id] * (width - len(s)) for s in seqs]),
            "attention_mask": torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs]),
            "chosen": torch.tensor(chosen), "rejected": torch.tensor(rejected), "margin": torch.tensor(margin)}


# --- the score -------------------------------------------------------------------------------------------

def sequence_rewards(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The score head at each row's last real token (right padding)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = getattr(inner, inner.base_model_prefix)
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    last = attention_mask.sum(-1) - 1
    picked = hidden[torch.arange(len(input_ids), device=hidden.device), last]
    head = inner.score
    return head(picked.to(head.weight.dtype if hasattr(head, "weight") else picked.dtype)).squeeze(-1).float()


def bradley_terry(rewards: torch.Tensor, batch: dict[str, torch.Tensor], center_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """-log sigmoid(r_chosen - r_rejected - margin), plus the centring term; returns (loss, r_c - r_r)."""
    diff = rewards[batch["chosen"]] - rewards[batch["rejected"]]
    loss = -F.logsigmoid(diff - batch["margin"].to(diff)).mean()
    if center_coef:
        loss = loss + center_coef * ((rewards[batch["chosen"]] + rewards[batch["rejected"]]) ** 2).mean()
    return loss, diff


class GroupedBatches(torch.utils.data.Dataset):
    def __init__(self, batches: list[list[Group]]):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> list[Group]:
        return self.batches[i]


class RewardTrainer(Trainer):
    """The Trainer's loop (checkpoints, resume, logging) with our grouped pairwise loss and eval metrics."""

    def __init__(self, *args, center_coef: float, eval_batches: list[list[Group]] | None, **kwargs):
        super().__init__(*args, **kwargs)
        self.center_coef, self.eval_batches = center_coef, eval_batches

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        rewards = sequence_rewards(model, inputs["input_ids"], inputs["attention_mask"])
        loss, diff = bradley_terry(rewards, inputs, self.center_coef)
        return (loss, {"diff": diff}) if return_outputs else loss

    @torch.no_grad()
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        if not self.eval_batches:
            return {}
        self.model.eval()
        losses, diffs = [], []
        for groups in self.eval_batches:
            inputs = self._prepare_inputs(collate(self.processing_class.pad_token_id, [groups]))
            rewards = sequence_rewards(self.model, inputs["input_ids"], inputs["attention_mask"])
            loss, diff = bradley_terry(rewards, inputs, 0.0)
            losses.append(float(loss) * len(diff))
            diffs.append(diff.float().cpu())
        d = torch.cat(diffs)
        metrics = {f"{metric_key_prefix}_loss": sum(losses) / len(d), f"{metric_key_prefix}_accuracy": float((d > 0).float().mean()),
                   f"{metric_key_prefix}_mean_margin": float(d.mean())}
        self.log(metrics)
        self.model.train()
        return metrics


@torch.no_grad()
def reward_stats(model, groups: list[Group], pad_id: int, batch: int = 32) -> dict[str, float]:
    """Mean and std of the reward over the training responses: PPO normalises its scores with them."""
    model.eval()
    device = next(model.parameters()).device
    seqs = [s for g in groups for s in g.sequences]
    out = []
    for i in range(0, len(seqs), batch):
        chunk = seqs[i: i + batch]
        b = collate(pad_id, [[Group(chunk, [(0, 0, 0.0)])]])
        out.append(sequence_rewards(model, b["input_ids"].to(device), b["attention_mask"].to(device)).cpu())
    r = torch.cat(out)
    return {"mean": float(r.mean()), "std": float(r.std()) if len(r) > 1 else 1.0, "n": len(r)}


def run(cfg: RMConfig) -> dict[str, Any]:
    # 1. Validate and tokenise everything before a model or run directory exists.
    train_rows = data.load_pairs(cfg.data)
    eval_rows = data.load_pairs(cfg.eval_data) if cfg.eval_data else None
    lineage, tokenizer = models.tokenizer_for(cfg)
    train_groups, counts = encode_groups(train_rows, tokenizer, cfg.max_length, cfg.truncation)
    eval_groups, eval_counts = encode_groups(eval_rows, tokenizer, cfg.max_length, cfg.truncation) if eval_rows else ([], {})
    if not train_groups:
        raise DataError(cfg.data[0], "no usable comparison pairs")
    skipped = {**train_rows.skipped, **{k: v for k, v in counts.items() if k != "pairs"}}
    print(f"[align] {counts['pairs']} training pairs in {len(train_groups)} prompt groups; "
          + ", ".join(f"{k}: {v}" for k, v in skipped.items()), flush=True)

    with Run.open(cfg.output, "rm", cfg.overwrite, cfg.resume) as out:
        out.start(to_dict(cfg), data={"train": train_rows.files, "eval": eval_rows.files if eval_rows else [],
                                      "counts": {"train": {**counts, **train_rows.skipped}, "eval": eval_counts}})
        model = models.prepare(cfg, "seq_cls", lineage, tokenizer)
        args = train.trainer_args(cfg, out, TrainingArguments, per_device_train_batch_size=1,
                                  per_device_eval_batch_size=1)
        trainer = RewardTrainer(
            model=model, args=args, processing_class=tokenizer,
            train_dataset=GroupedBatches(batches_of(train_groups, cfg.batch_size, cfg.seed)),
            data_collator=lambda b: collate(tokenizer.pad_token_id, b), center_coef=cfg.center_rewards_coef,
            eval_batches=batches_of(eval_groups, cfg.batch_size, cfg.seed) if eval_groups else None)
        train.use_our_callbacks(trainer, out)
        train_out = train.fit(trainer, out, cfg.resume)
        metrics = train.standard_metrics(trainer, train_out)
        metrics.update(trainer.evaluate())
        norm = reward_stats(trainer.model, train_groups, tokenizer.pad_token_id)
        train.save_model(trainer.model, tokenizer, out, cfg.full)
        out.write(reward_norm=norm, **train.model_fields(cfg, tokenizer, lineage, "seq_cls"))
        out.finish(metrics)
    print(train.summarise(out, metrics), flush=True)
    return out.manifest


# --- using a reward model --------------------------------------------------------------------------------

def encode_for_scoring(tokenizer, prompts: list[list[dict]], responses: list[str | list[dict]],
                       manifest: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Exactly the training tokenisation (template, end-of-turn, left truncation) for prompt/response pairs."""
    max_length = manifest["config"]["max_length"]
    seqs = []
    for p, r in zip(prompts, responses):
        resp = [{"role": "assistant", "content": r if r.strip() else " "}] if isinstance(r, str) else r
        seqs.append(chat.conversation_ids(tokenizer, p, resp)[-max_length:])
    b = collate(tokenizer.pad_token_id, [[Group(seqs, [(0, 0, 0.0)])]])
    b["last_index"] = b["attention_mask"].sum(-1) - 1
    return b


class RewardModel:
    """A trained RM ready to score: `score(prompts, responses)` with prompts as message lists."""

    def __init__(self, model, tokenizer, manifest: dict[str, Any], batch_size: int = 16):
        self.model, self.tokenizer, self.manifest, self.batch_size = model, tokenizer, manifest, batch_size

    @torch.no_grad()
    def score(self, prompts: list[list[dict]], responses: list[str | list[dict]]) -> list[float]:
        device = next(self.model.parameters()).device
        out: list[float] = []
        for i in range(0, len(prompts), self.batch_size):
            b = encode_for_scoring(self.tokenizer, prompts[i: i + self.batch_size], responses[i: i + self.batch_size],
                                   self.manifest)
            out += sequence_rewards(self.model, b["input_ids"].to(device), b["attention_mask"].to(device)).tolist()
        return out


def load_reward_model(run_dir: str, dtype: str = "auto") -> RewardModel:
    manifest = runs.read_manifest(run_dir, require_complete=True)
    if manifest["stage"] != "rm":
        raise runs.RunError(f"{run_dir}: a {manifest['stage']} run, not a reward model")
    model, tokenizer, manifest = models.load_run(run_dir, "seq_cls", dtype=dtype, merge=False)
    return RewardModel(model, tokenizer, manifest)


def score_file(run_dir: str, path: str, output: str | None) -> dict[str, Any]:
    """`align score`: rewards for prompt/response rows or for comparisons (with pairwise accuracy)."""
    import json

    pairs = data.is_comparison_file(path)
    # prompt/response rows may come in any SFT format that ends with an answer
    loaded = data.load_pairs(path) if pairs else data.load_sft(path)
    rm = load_reward_model(run_dir)
    lines, result = [], {"rows": len(loaded.rows)}
    if pairs:
        vals = loaded.values()
        chosen = rm.score([v["prompt"] for v in vals], [v["chosen"] for v in vals])
        rejected = rm.score([v["prompt"] for v in vals], [v["rejected"] for v in vals])
        for row, c, r in zip(loaded.rows, chosen, rejected):
            lines.append({"row": row.row, "chosen_reward": c, "rejected_reward": r})
        result["accuracy"] = sum(c > r for c, r in zip(chosen, rejected)) / len(chosen)
        result["mean_margin"] = sum(c - r for c, r in zip(chosen, rejected)) / len(chosen)
    else:
        prompts, answers = [], []
        for v in loaded.values():
            msgs = v.get("messages") or [{"role": "assistant", "content": v["text"]}]
            last = max(i for i, m in enumerate(msgs) if m["role"] != "assistant") if len(msgs) > 1 else 0
            prompts.append(msgs[: last + 1] if len(msgs) > 1 else [])
            answers.append(msgs[last + 1:] if len(msgs) > 1 else msgs)
        for row, s in zip(loaded.rows, rm.score(prompts, answers)):
            lines.append({"row": row.row, "reward": s})
        result["mean_reward"] = sum(x["reward"] for x in lines) / len(lines)
    text = "".join(json.dumps(x) + "\n" for x in lines)
    if output:
        with open(output, "w") as f:
            f.write(text)
    else:
        print(text, end="")
    return result
