"""Reward model (InstructGPT step 2): a scalar score for a prompt + response, learned from comparisons.

Read and validate comparisons (pairs, HH-RLHF dialogues, rankings -> pairs) -> tokenise each distinct
response of a prompt once, ending at its end-of-turn token -> claim the run directory -> base (+lineage)
as a 1-output sequence classifier with LoRA (task SEQ_CLS: the score head trains and is saved with the
adapter) -> Bradley-Terry loss over all pairs of a prompt in one batch (as InstructGPT does, so K ranked
responses are encoded once, not K-1 times; with prefix sharing their prompt runs once, not K times) -> eval
accuracy/margin -> record the reward mean/std for PPO.

The score is read at each sequence's last real token, found from the attention mask (right padding). HF's
own sequence classifiers read the rightmost token that is not the pad token: when pad == EOS (SmolLM2, our
test model) that is the token *before* the end-of-turn token, so their pooled output is not used.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainingArguments

from align import data, infer, models, reward_model, train
from align.config import RMConfig, to_dict
from align.errors import DataError
from align.prefix_sharing import PrefixSharing
from align.runs import Run

# responses scored for the reward mean/std (whole prompt groups, so a few more): the mean to 0.06 std and the std
# to ~4.4% (1/sqrt(2 x 256)), ample for PPO's standardised scores. A forward pass, not free: 512 responses of HH
# pairs at 320 tokens took 131 s on 2 CPU cores, longer than five training steps of the recipe's judge
NORM_SAMPLE = 256


# --- encoding: groups of responses to one prompt ---------------------------------------------------------

@dataclass
class Group:
    """One prompt's distinct responses (token ids) and its comparisons as index pairs into them."""

    sequences: list[list[int]]
    pairs: list[tuple[int, int, float]]  # (chosen, rejected, margin)


def encode_groups(loaded: data.Loaded, tokenizer, max_length: int,
                  truncation: str) -> tuple[list[Group], dict[str, int]]:
    """Pairs -> groups (the pairs of one ranking share `group`); counts the pairs cut or dropped for length.

    truncation 'left' keeps a conversation's end; a pair is dropped only if a response alone is too long.
    truncation 'drop' drops every pair with a side over max_length.
    """
    encoded: dict[int, dict[str, tuple[list[int], str]]] = {}  # group -> response -> (ids, status)
    kept: dict[int, list[tuple[str, str, float]]] = {}  # group -> pairs kept
    counts = {"pairs": 0, "truncated_pairs": 0, "dropped_pairs": 0}
    for row in loaded.rows:
        v, responses = row.value, encoded.setdefault(row.value["group"], {})
        keys = [repr(v["chosen"]), repr(v["rejected"])]
        for key, side in zip(keys, ("chosen", "rejected")):
            if key not in responses:  # each distinct response of a prompt is encoded (and scored) once
                responses[key] = reward_model.encode_response(tokenizer, v["prompt"], v[side], max_length)
        statuses = {responses[k][1] for k in keys}
        if "too_long" in statuses or (truncation == "drop" and "truncated" in statuses):
            counts["dropped_pairs"] += 1
            continue
        counts["truncated_pairs"] += "truncated" in statuses
        counts["pairs"] += 1
        kept.setdefault(v["group"], []).append((*keys, v["margin"] or 0.0))
    groups = []
    for g, pairs in kept.items():
        used = list(dict.fromkeys(k for c, r, _ in pairs for k in (c, r)))  # responses of dropped pairs go
        at = {k: i for i, k in enumerate(used)}
        groups.append(Group([encoded[g][k][0] for k in used], [(at[c], at[r], m) for c, r, m in pairs]))
    return groups, counts


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


class GroupedBatches(torch.utils.data.Dataset):
    """Pre-built batches as dataset items: the Trainer (batch size 1) shuffles their order every epoch."""

    def __init__(self, batches: list[list[Group]]):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> list[Group]:
        return self.batches[i]


def collate_groups(groups: list[Group], pad_id: int) -> dict[str, Any]:
    """Groups -> their distinct sequences, right-padded, pair indices into them, and each group's rows (they
    share the prompt: prefix_sharing runs it once)."""
    seqs, chosen, rejected, margin, rows = [], [], [], [], []
    for g in groups:
        base = len(seqs)
        seqs += g.sequences
        rows.append(list(range(base, len(seqs))))
        for c, r, m in g.pairs:
            chosen.append(base + c)
            rejected.append(base + r)
            margin.append(m)
    return {**reward_model.pad_right(seqs, pad_id), "chosen": torch.tensor(chosen), "rejected": torch.tensor(rejected),
            "margin": torch.tensor(margin), "groups": rows}


def micro_batches(groups: list[Group], max_tokens: int) -> list[list[Group]]:
    """Split a batch into runs of whole groups of at most `max_tokens` padded tokens (0: no split); groups
    of similar length go together, so little is spent on padding. A group over the budget goes alone."""
    if not max_tokens:
        return [groups]
    return [[groups[i] for i in batch] for batch in infer.length_batches(
        [max(map(len, g.sequences)) for g in groups], max_tokens, rows=[len(g.sequences) for g in groups])]


def collate(pad_id: int, max_tokens: int, batch: list[list[Group]]) -> dict[str, list[dict[str, Any]]]:
    """One pre-built batch of groups -> micro-batches, each weighted by its share of the batch's pairs so
    that their losses add up to the whole batch's mean loss (and their gradients to its gradient)."""
    (groups,) = batch
    total = sum(len(g.pairs) for g in groups)
    return {"micro": [{**collate_groups(part, pad_id), "weight": sum(len(g.pairs) for g in part) / total}
                      for part in micro_batches(groups, max_tokens)]}


# --- the loss ------------------------------------------------------------------------------

def bradley_terry(rewards: torch.Tensor, batch: dict[str, torch.Tensor],
                  center_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """-log sigmoid(r_chosen - r_rejected - margin), plus the centring term; returns (loss, r_c - r_r)."""
    r_c, r_r = rewards[batch["chosen"]], rewards[batch["rejected"]]
    diff = r_c - r_r
    loss = -F.logsigmoid(diff - batch["margin"].to(diff)).mean()
    if center_coef:
        loss = loss + center_coef * ((r_c + r_r) ** 2).mean()
    return loss, diff


class GroupedRewardTrainer(Trainer):
    """The Trainer's loop (checkpoints, resume, logging) with our grouped pairwise loss, run in micro-batches
    of at most `micro_batch_tokens` tokens so that memory does not grow with the batch, and eval metrics.
    With `sharing`, the responses of a prompt run its tokens once."""

    def __init__(self, *args, center_coef: float, micro_batch_tokens: int, sharing: PrefixSharing | None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.center_coef, self.micro_batch_tokens, self.sharing = center_coef, micro_batch_tokens, sharing

    def rewards(self, model, inputs) -> torch.Tensor:
        with self.sharing.over(inputs["groups"]) if self.sharing else contextlib.nullcontext():
            return reward_model.sequence_rewards(model, inputs["input_ids"], inputs["attention_mask"])

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, diff = bradley_terry(self.rewards(model, inputs), inputs, self.center_coef)
        loss = loss * inputs.get("weight", 1.0)
        return (loss, {"diff": diff}) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None) -> torch.Tensor:
        """Forward/backward per micro-batch (gradients accumulate; DDP syncs on the last one only)."""
        micro, total = inputs["micro"], 0.0
        for i, part in enumerate(micro):
            sync = contextlib.nullcontext() if i == len(micro) - 1 else self.accelerator.no_sync(model)
            with sync:
                total = total + super().training_step(model, part)
        return total

    def _track_num_input_tokens(self, inputs) -> None:
        for part in inputs["micro"]:  # the Trainer counts tokens in a flat batch; ours are in micro-batches
            super()._track_num_input_tokens(part)

    @torch.no_grad()
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval") -> dict[str, float]:
        """Pairwise accuracy, mean margin r_c - r_r and the plain Bradley-Terry loss on the eval pairs."""
        batches = eval_dataset if eval_dataset is not None else self.eval_dataset
        if not batches:
            return {}
        was_training = self.model.training
        self.model.eval()
        losses, diffs = [], []
        for groups in batches:
            for part in collate(self.processing_class.pad_token_id, self.micro_batch_tokens, [groups])["micro"]:
                inputs = self._prepare_inputs(part)
                loss, diff = bradley_terry(self.rewards(self.model, inputs), inputs, 0.0)
                losses.append(float(loss) * len(diff))
                diffs.append(diff.cpu())
        d = torch.cat(diffs).tolist()
        metrics = {f"{metric_key_prefix}_loss": sum(losses) / len(d),
                   **{f"{metric_key_prefix}_{k}": v for k, v in reward_model.pair_metrics(d).items()}}
        self.model.train(was_training)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


def reward_stats(model, groups: list[Group], pad_id: int, seed: int,
                 sharing: PrefixSharing | None = None) -> dict[str, float]:
    """Mean and std of the reward over the training responses (whole prompt groups drawn at random up to
    NORM_SAMPLE responses on big sets, so that with `sharing` each prompt runs once): PPO standardises its scores
    with them."""
    model.eval()
    seqs, members = [], []  # the responses scored, and which of them share a prompt
    for g in random.Random(seed).sample(groups, len(groups)):
        if len(seqs) >= NORM_SAMPLE:
            break
        members.append(list(range(len(seqs), len(seqs) + len(g.sequences))))
        seqs += g.sequences
    r = torch.tensor(reward_model.score_sequences(model, seqs, pad_id, groups=members, sharing=sharing))
    return {"mean": float(r.mean()), "std": float(r.std()) if len(r) > 1 else 1.0, "n": len(r)}


# --- the stage -------------------------------------------------------------------------------------------

def _encode(loaded: data.Loaded, tokenizer, cfg: RMConfig, what: str) -> tuple[list[Group], dict[str, int]]:
    """Encode, then say (and return for the manifest) how many pairs were kept, cut, dropped or skipped."""
    groups, counts = encode_groups(loaded, tokenizer, cfg.max_length, cfg.truncation)
    counts = {**counts, **loaded.skipped}
    notes = "".join(f"; {k.replace('_', ' ')}: {v}" for k, v in counts.items() if v and k != "pairs")
    print(f"[align] {what}: {counts['pairs']} pairs in {len(groups)} prompt groups{notes}", flush=True)
    if not groups:
        raise DataError(loaded.files[0]["path"], f"no usable comparison pairs{notes}")
    return groups, counts


def run(cfg: RMConfig) -> dict[str, Any]:
    # 1. Everything that can be wrong with the input is found before a model or run directory exists.
    train_rows = data.load_pairs(cfg.data)
    eval_rows = data.load_pairs(cfg.eval_data) if cfg.eval_data else None
    lineage, tokenizer = models.tokenizer_for(cfg)
    train_groups, train_counts = _encode(train_rows, tokenizer, cfg, "train")
    eval_groups, eval_counts = _encode(eval_rows, tokenizer, cfg, "eval") if eval_rows else ([], {})

    with Run.open(cfg.output, "rm", cfg.overwrite, cfg.resume) as out:
        out.start(to_dict(cfg), lineage=lineage, data={"train": train_rows.files, "eval": eval_rows.files if eval_rows else [],
                                      "counts": {"train": train_counts, "eval": eval_counts}})
        model = models.prepare(cfg, "seq_cls", lineage, tokenizer)
        micro = train.micro_batch_tokens(cfg, model, lm_head=False)
        # a dataset item is a whole batch of groups (so a prompt's pairs are never split): batch size 1
        args = train.trainer_args(cfg, out, TrainingArguments, per_device_train_batch_size=1,
                                  per_device_eval_batch_size=1)
        sharing = PrefixSharing(model) if cfg.prefix_sharing else None
        trainer = GroupedRewardTrainer(
            model=model, args=args, processing_class=tokenizer, center_coef=cfg.center_rewards_coef,
            micro_batch_tokens=micro, sharing=sharing,
            train_dataset=GroupedBatches(batches_of(train_groups, cfg.batch_size, cfg.seed)),
            eval_dataset=GroupedBatches(batches_of(eval_groups, cfg.batch_size, cfg.seed)) if eval_groups else None,
            data_collator=lambda b: collate(tokenizer.pad_token_id, micro, b))
        train.use_our_callbacks(trainer, out)
        train_out = train.fit(trainer, out, cfg.resume)
        metrics = train.standard_metrics(trainer, train_out)
        metrics.update(train.evaluate_at_end(trainer))
        norm = reward_stats(trainer.model, train_groups, tokenizer.pad_token_id, cfg.seed, sharing)
        train.save_model(trainer.model, tokenizer, out, cfg.full)
        out.write(reward_norm=norm, **train.model_fields(cfg, tokenizer, lineage, "seq_cls"))
        out.finish(metrics)
    print(train.summarise(out, metrics), flush=True)
    return out.manifest
