"""Supervised fine-tuning: teach the model to answer like the demonstrations (InstructGPT step 1).

Read and validate the data -> tokenise with the chat template (loss on assistant turns, end-of-turn token
included) -> claim the run directory -> load base (+lineage) with a fresh LoRA -> pack the examples into
rows of at most max_length tokens -> the Trainer's loop with our loss -> save adapter, tokenizer, manifest.

Packing keeps every row's examples apart without a flattened batch: each example's position ids restart at
0, from which the model builds a block-diagonal causal mask per row, so attention costs what the examples
cost alone (a batch flattened into one row, TRL's padding-free layout, pays attention over the whole batch:
profiled on CPU, that and LoRA's per-call copies made the step ~5x slower than the bare model's). The LM
head runs only where a token carries loss (`LabelPositionsLoss`).
"""

from __future__ import annotations

import bisect
from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainingArguments

from align import chat, data, models, train
from align.config import SFTConfig, to_dict
from align.errors import DataError
from align.runs import Run

IGNORE = -100


def encode_rows(loaded: data.Loaded, tokenizer, cfg: SFTConfig) -> list[dict[str, Any]]:
    """Rows -> {"input_ids", "labels"}; an over-long row is an error naming it unless --truncate."""
    out = []
    for row in loaded.rows:
        if "text" in row.value:
            enc = chat.encode_plain(tokenizer, row.value["text"], cfg.max_length, cfg.truncate)
        else:
            enc = chat.encode_chat(tokenizer, row.value["messages"], cfg.max_length, cfg.completion_only_loss,
                                   cfg.truncate)
        if enc.truncated and not cfg.truncate:
            raise row.error(f"{len(enc.input_ids)} tokens, over max_length {cfg.max_length} "
                            "(raise --max-length, or pass --truncate to cut it)",
                            "text" if "text" in row.value else None)
        if not any(enc.loss_mask):
            raise row.error("no token carries loss (is the assistant turn empty, or cut off by truncation?)")
        out.append({"input_ids": enc.input_ids, "labels": enc.labels})
    return out


def pack(examples: list[dict[str, Any]], max_length: int) -> list[dict[str, list[int]]]:
    """Best-fit decreasing: examples into rows of at most max_length tokens, each with its own positions.

    An example's first label is dropped (it would be predicted from the previous example's last token);
    unpacked, the causal shift never predicts it either, so the loss is the same as training them one by one.
    """
    rows: list[list[int]] = []  # example indices per row
    free: list[tuple[int, int]] = []  # (room left, row), sorted: the best fit is the first with enough room
    for i in sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"])):
        n = len(examples[i]["input_ids"])
        at = bisect.bisect_left(free, (n, -1))
        if at < len(free):
            room, r = free.pop(at)
        else:
            room, r = max_length, len(rows)
            rows.append([])
        rows[r].append(i)
        bisect.insort(free, (room - n, r))
    return [{"input_ids": [t for i in row for t in examples[i]["input_ids"]],
             "labels": [t for i in row for t in [IGNORE] + examples[i]["labels"][1:]],
             "position_ids": [p for i in row for p in range(len(examples[i]["input_ids"]))]} for row in rows]


def unpacked(examples: list[dict[str, Any]]) -> list[dict[str, list[int]]]:
    """--no-packing: one example a row."""
    return [{**e, "position_ids": list(range(len(e["input_ids"])))} for e in examples]


def collate(pad_id: int, rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
    """Right-pad to the longest row. Padding continues the last example's positions: causal attention keeps
    every real token from seeing it, so no attention mask is needed (and the per-row masks come from the
    position ids alone). `real_tokens` counts what is not padding, for tokens/s."""
    width = max(len(r["input_ids"]) for r in rows)
    ids, labels, pos = [], [], []
    for r in rows:
        pad = width - len(r["input_ids"])
        ids.append(r["input_ids"] + [pad_id] * pad)
        labels.append(r["labels"] + [IGNORE] * pad)
        last = r["position_ids"][-1] + 1
        pos.append(r["position_ids"] + list(range(last, last + pad)))
    return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "position_ids": torch.tensor(pos),
            "real_tokens": torch.tensor(sum(len(r["input_ids"]) for r in rows))}


class LabelPositionsLoss(Trainer):
    """Token cross-entropy where the LM head runs only on the positions that predict a label: a hook hands
    the head those hidden states alone, so prompt and padding positions cost no vocabulary projection. The
    loss is summed in fp32 and divided by the tokens of the whole (accumulated) batch, as the model's own."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = True  # our loss divides by num_items_in_batch itself

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        target = inputs["labels"][:, 1:]
        keep = F.pad(target != IGNORE, (0, 1), value=False)  # position t predicts label t + 1
        head = models.unwrap(model).get_output_embeddings()
        hook = head.register_forward_pre_hook(lambda _module, args: (args[0][keep],))
        try:
            logits = model(input_ids=inputs["input_ids"], position_ids=inputs["position_ids"], use_cache=False).logits
        finally:
            hook.remove()
        total = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target[target != IGNORE],
                                reduction="sum")
        n = num_items_in_batch if num_items_in_batch is not None else keep.sum()
        loss = total / torch.as_tensor(n, device=total.device).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # DDP averages gradients; n counts every rank's tokens
        return (loss, {}) if return_outputs else loss

    def _track_num_input_tokens(self, inputs) -> None:
        self.state.num_input_tokens_seen += int(self.accelerator.gather(inputs["real_tokens"].to(self.args.device)).sum())


def run(cfg: SFTConfig) -> dict[str, Any]:
    # 1. Everything that can be wrong with the input is found before a model or run directory exists.
    train_rows = data.load_sft(cfg.data)
    eval_rows = data.load_sft(cfg.eval_data) if cfg.eval_data else None
    lineage, tokenizer = models.tokenizer_for(cfg)
    train_set = encode_rows(train_rows, tokenizer, cfg)
    eval_set = encode_rows(eval_rows, tokenizer, cfg) if eval_rows else None
    if not train_set:
        raise DataError(cfg.data[0], "no training rows")
    layout = (lambda e: pack(e, cfg.max_length)) if cfg.packing else unpacked
    train_rows_packed = layout(train_set)
    if cfg.packing:
        print(f"[align] {len(train_set)} examples packed into {len(train_rows_packed)} rows of at most "
              f"{cfg.max_length} tokens", flush=True)

    with Run.open(cfg.output, "sft", cfg.overwrite, cfg.resume) as out:
        out.start(to_dict(cfg), lineage=lineage, data={"train": train_rows.files, "eval": eval_rows.files if eval_rows else [],
                                      "skipped": train_rows.skipped})
        model = models.prepare(cfg, "causal", lineage, tokenizer)
        args = train.trainer_args(cfg, out, TrainingArguments, tokens_per_example=cfg.max_length,
                                  max_tokens=train.micro_batch_tokens(cfg, model, lm_head=True))
        trainer = LabelPositionsLoss(model=model, args=args, processing_class=tokenizer,
                                     train_dataset=train_rows_packed,
                                     eval_dataset=layout(eval_set) if eval_set else None,
                                     data_collator=lambda rows: collate(tokenizer.pad_token_id, rows))
        train.use_our_callbacks(trainer, out)
        train_out = train.fit(trainer, out, cfg.resume)
        metrics = train.standard_metrics(trainer, train_out)
        if eval_set:
            metrics.update({k: v for k, v in trainer.evaluate().items() if k.startswith("eval_")})
        train.save_model(trainer.model, tokenizer, out, cfg.full)
        out.write(**train.model_fields(cfg, tokenizer, lineage, "causal"))
        out.finish(metrics)
    print(train.summarise(out, metrics), flush=True)
    return out.manifest
