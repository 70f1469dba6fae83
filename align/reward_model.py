"""Reward models in use: how an RM reads text, where its score is, loading a finished `align rm` run, scoring.

The `align rm` stage (rm.py) trains with these; `align score`, `align eval`, DPO's --judge and PPO's --reward
score with them, so a response is tokenised and scored exactly as in training: the chat template, the
response ending at its end-of-turn token, over-long conversations keeping their end, the score read at the
last real token (never at padding, also when pad == EOS).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Sequence
from typing import Any

import torch

from align import chat, data, infer, models, runs
from align.errors import RunError
from align.prefix_sharing import PrefixSharing

SCORE_TOKENS = 8192  # padded tokens per scoring pass: rows of similar length, so little is spent on padding


# --- reading text as the RM does ------------------------------------------------------------------------

def encode_response(tokenizer, prompt: list[dict], response: list[dict], max_length: int) -> tuple[list[int], str]:
    """One conversation as the RM reads it, in training and in scoring alike -> (ids, status).

    Over max_length it keeps its end (truncation 'left'): the oldest prompt tokens go, a leading BOS stays.
    status: "ok", "truncated" (only prompt tokens were cut) or "too_long" (the response alone does not fit).
    """
    enc = chat.encode_conversation(tokenizer, prompt, response)
    if len(enc.input_ids) <= max_length:
        return enc.input_ids, "ok"
    status = "truncated" if sum(enc.loss_mask) < max_length else "too_long"
    return chat.truncate_left(tokenizer, enc.input_ids, max_length), status


def scoring_ids(tokenizer, prompt: list[dict], response: str | list[dict], max_length: int) -> list[int]:
    """A prompt and a response (text, or assistant messages) -> the ids the RM scores (encode_response)."""
    if isinstance(response, str):
        response = [{"role": "assistant", "content": response if response.strip() else " "}]
    return encode_response(tokenizer, prompt, response, max_length)[0]


def pad_right(seqs: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(map(len, seqs))
    return {"input_ids": torch.tensor([s + [pad_id] * (width - len(s)) for s in seqs]),
            "attention_mask": torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])}


def encode_for_scoring(tokenizer, prompts: list[list[dict]], responses: list[str | list[dict]],
                       manifest: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Exactly the training tokenisation (template, end-of-turn, left truncation), right-padded; `last_index`
    is where the score is read."""
    max_length = manifest["config"]["max_length"]
    batch = pad_right([scoring_ids(tokenizer, p, r, max_length) for p, r in zip(prompts, responses)],
                      tokenizer.pad_token_id)
    batch["last_index"] = batch["attention_mask"].sum(-1) - 1
    return batch


# --- the score ------------------------------------------------------------------------------------------

def score_head(model) -> torch.nn.Module:
    """The `score` layer under any DDP / peft wrapping (peft's copy of it when the head is trained)."""
    return models.unwrap(model).score


def sequence_rewards(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Each row's score at its last real token (right padding: attention-mask length - 1).

    The model's own forward runs (so DDP, peft and 4-bit all work as usual); a hook keeps the score head's
    per-token output, from which we take the last real position instead of HF's pad-token-based one.
    """
    per_token = []
    hook = score_head(model).register_forward_hook(lambda _module, _args, out: per_token.append(out))
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    finally:
        hook.remove()
    last = attention_mask.sum(-1) - 1
    return per_token[-1][torch.arange(len(last), device=last.device), last, 0].float()


@torch.no_grad()
def score_sequences(model, seqs: list[list[int]], pad_id: int, max_tokens: int = SCORE_TOKENS,
                    groups: list[list[int]] | None = None, sharing: PrefixSharing | None = None) -> list[float]:
    """The reward of each token sequence, in their order; computed shortest first, in batches of at most
    `max_tokens` padded tokens (infer.length_batches). `groups` (indices of sequences that share a prompt)
    stay in one batch (a group over the budget in parts that fit it), and with `sharing` run their prompt
    once."""
    device = next(model.parameters()).device
    parts = []  # each group, or where it is over the budget, its parts that fit
    for g in groups or [[i] for i in range(len(seqs))]:
        size = max(1, max_tokens // max(len(seqs[i]) for i in g)) if max_tokens else len(g)
        parts += [g[i:i + size] for i in range(0, len(g), size)]
    out: list[float] = [0.0] * len(seqs)
    for batch in infer.length_batches([max(len(seqs[i]) for i in g) for g in parts], max_tokens,
                                      rows=[len(g) for g in parts]):
        idx = [i for b in batch for i in parts[b]]
        starts = [0] + list(itertools.accumulate(len(parts[b]) for b in batch))
        local = [list(range(a, z)) for a, z in zip(starts, starts[1:])]
        inputs = {k: t.to(device) for k, t in pad_right([seqs[i] for i in idx], pad_id).items()}
        shares = sharing and any(len(g) > 1 for g in local)  # one response a prompt (PPO's): nothing to share
        with sharing.over(local) if shares else contextlib.nullcontext():
            rewards = sequence_rewards(model, **inputs).tolist()
        for i, r in zip(idx, rewards):
            out[i] = r
    return out


def pair_metrics(margins: Sequence[float]) -> dict[str, float]:
    """Pairwise accuracy (share of pairs whose chosen scores above its rejected) and mean margin r_c - r_r."""
    return {"accuracy": sum(m > 0 for m in margins) / len(margins), "mean_margin": sum(margins) / len(margins)}


# --- a finished reward model run -------------------------------------------------------------------------

def require_rm_run(path: str, tokenizer=None, what: str | None = None) -> dict[str, Any]:
    """The manifest of `path` if it is a complete `align rm` run that reads text as `tokenizer` does (same
    vocabulary and chat template; tokenizer None: not compared); RunError otherwise. `what` names it in the
    message (e.g. '--judge runs/rm')."""
    what = what or str(path)
    manifest = runs.read_manifest(path, require_complete=True)
    if manifest.get("stage") != "rm":
        raise RunError(f"{what}: a {manifest.get('stage')} run, not a reward model (train one with `align rm`)")
    if tokenizer is not None:
        mine = {"tokenizer_hash": chat.tokenizer_hash(tokenizer), "template_hash": chat.template_hash(tokenizer)}
        runs.check_same_template(manifest, mine, what)
    return manifest


class RewardModel:
    """A trained RM, ready to score: prompts are message lists, responses text (or assistant messages)."""

    def __init__(self, model, tokenizer, manifest: dict[str, Any], max_tokens: int = SCORE_TOKENS):
        self.model, self.tokenizer, self.manifest, self.max_tokens = model, tokenizer, manifest, max_tokens
        self.sharing = PrefixSharing(model)

    def score(self, prompts: list[list[dict]], responses: list[str | list[dict]]) -> list[float]:
        """One reward per (prompt, response), in their order. Each distinct pair is encoded and scored once
        (a ranking's responses recur across its pairs), in batches of similar length; the responses to one
        prompt go together and run the prompt once (prefix sharing)."""
        index: dict[str, int] = {}  # a distinct (prompt, response) -> its place in `seqs`
        by_prompt: dict[str, list[int]] = {}  # a prompt -> the places of its responses
        seqs, where = [], []  # where: each row's place in `seqs`
        max_length = self.manifest["config"]["max_length"]
        for p, r in zip(prompts, responses):
            key = repr((p, r))
            if key not in index:
                index[key] = len(seqs)
                by_prompt.setdefault(repr(p), []).append(len(seqs))
                seqs.append(scoring_ids(self.tokenizer, p, r, max_length))
            where.append(index[key])
        scores = score_sequences(self.model, seqs, self.tokenizer.pad_token_id, self.max_tokens,
                                 list(by_prompt.values()), self.sharing)
        return [scores[i] for i in where]

    def score_conversations(self, conversations: list[list[dict]]) -> list[float]:
        """Whole conversations, each ending with the assistant answer to score."""
        split = [data.split_last_turn(c, ("conversations", i), "messages") for i, c in enumerate(conversations, 1)]
        return self.score([p for p, _ in split], [a for _, a in split])


def load_reward_model(run_dir: str, dtype: str = "auto", merge: bool = True) -> RewardModel:
    """A finished `align rm` run as a RewardModel. merge: its adapter merged into the base (nothing of LoRA is
    left to run; in bf16 the merged weights are rounded once, so scores move within bf16 precision);
    merge=False keeps the adapter as a peft model."""
    require_rm_run(run_dir)
    model, tokenizer, manifest = models.load_run(run_dir, "seq_cls", dtype=dtype, merge=merge)
    return RewardModel(model, tokenizer, manifest)
