"""Supervised fine-tuning: teach the model to answer like the demonstrations (InstructGPT step 1).

Read and validate the data -> tokenise with the chat template (loss on assistant turns, end-of-turn token
included) -> claim the run directory -> load base (+lineage) with a fresh LoRA -> pack the examples into
rows of at most max_length tokens -> the Trainer's loop with our loss -> save adapter, tokenizer, manifest.

Packing keeps every row's examples apart without a flattened batch: each example's position ids restart at
0, from which the model builds a block-diagonal causal mask per row (a batch flattened into one row, TRL's
padding-free layout, pays attention over the whole batch: profiled on CPU, that and LoRA's per-call copies made
the step ~5x slower than the bare model's). On a CPU attention then runs example by example (attention.py's
blocks), where the kernel would otherwise compute the whole row's square and mask most of it: a bf16 step of
8 rows of 4-5 examples (data/sft_train.jsonl at 512) 11.5 -> 10.3 s (1.12x), fp32 1.20x. The LM head runs only
where a token carries loss (`LabelPositionsLoss`).
"""

from __future__ import annotations

import bisect
from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainingArguments

from align import attention, chat, data, models, train
from align.attention import BLOCKS
from align.config import SFTConfig, to_dict
from align.errors import DataError
from align.prefix_sharing import supported
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


class LinearCrossEntropy(torch.autograd.Function):
    """Summed token cross-entropy of `hidden @ weight.T`, a chunk of positions at a time, for a frozen head.

    The LM head's logits are never held whole: each chunk's logits, fp32 log-softmax and gradient are made and
    dropped in turn, and the gradient of the hidden states is computed in the forward (the loss is a scalar:
    backward only scales it). On SmolLM2's 49,152-word vocabulary a batch of 2,000 label tokens otherwise holds
    ~1.5 GB of logits, their fp32 copies and gradients: dtype copies, log-softmax and its backward were ~25% of
    a bf16 CPU step's samples (py-spy, data/sft_train.jsonl), and fused the step is 1.11x faster (A/B in one
    process, 4 batches of 8 packed rows of 512 tokens, best of 3 rounds: 64.3 -> 58.1 s). The arithmetic is
    the unfused one's: logits in the matmul's dtype, the log-softmax and loss in fp32, the logits' gradient
    cast back before the matmul with the weight.
    """

    @staticmethod
    def forward(ctx, hidden, weight, target, chunk: int):
        total = hidden.new_zeros((), dtype=torch.float32)
        grad = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        for start in range(0, len(hidden), chunk):
            h, t = hidden[start:start + chunk], target[start:start + chunk]
            z = (h @ weight.T).float()
            lse = torch.logsumexp(z, -1)
            total += (lse - z.gather(1, t[:, None]).squeeze(1)).sum()
            if grad is not None:
                p = z.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
                p[torch.arange(len(t), device=p.device), t] -= 1
                grad[start:start + chunk] = p.to(weight.dtype) @ weight
        ctx.save_for_backward(grad)
        return total

    @staticmethod
    def backward(ctx, g):
        (grad,) = ctx.saved_tensors
        return (grad.float() * g).to(grad.dtype), None, None, None


def fusable(model) -> bool:
    """Whether `LinearCrossEntropy` can stand in for the model's LM head: a frozen plain `nn.Linear` without
    bias (not a head that trains or carries an adapter, nor one that DeepSpeed ZeRO-3 or FSDP shards), whose
    output the model returns as its logits unchanged. The last is probed on a few tokens: Gemma caps its
    logits, Cohere and Granite scale them, some models cut padded vocabulary off."""
    head = models.unwrap(model).get_output_embeddings()
    w = getattr(head, "weight", None)
    if (type(head) is not torch.nn.Linear or head.bias is not None or type(w) is not torch.nn.Parameter
            or w.requires_grad or w.shape != (head.out_features, head.in_features) or hasattr(w, "ds_id")):
        return False
    outputs = []
    hook = head.register_forward_hook(lambda _module, _args, out: outputs.append(out))
    try:
        with torch.no_grad():
            logits = model(input_ids=torch.arange(4, device=w.device)[None], use_cache=False).logits
    finally:
        hook.remove()
    return logits.shape == outputs[-1].shape and torch.equal(logits.float(), outputs[-1].float())


class LabelPositionsLoss(Trainer):
    """Token cross-entropy where the LM head runs only on the positions that predict a label: a hook hands
    the head those hidden states alone (or, where `LinearCrossEntropy` applies the head itself, takes them and
    hands it nothing). The loss is summed in fp32 and divided by the tokens of the whole (accumulated) batch,
    as the model's own."""

    CHUNK = 256  # positions whose logits LinearCrossEntropy holds at once

    def __init__(self, *args, fused: bool, head_dtype: torch.dtype, blocks: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = True  # our loss divides by num_items_in_batch itself
        self.fused, self.head_dtype = fused, head_dtype  # head_dtype: what autocast would run the head in
        self.blocks = blocks  # packed rows attend example by example (attention.py's blocks)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        target = inputs["labels"][:, 1:]
        keep = F.pad(target != IGNORE, (0, 1), value=False)  # position t predicts label t + 1
        head = models.unwrap(model).get_output_embeddings()
        fused, taken = self.fused and not hasattr(head.weight, "ds_id"), []  # ZeRO-3 shards it in train()

        def select(_module, args):
            taken.append(args[0][keep])
            return (taken[-1][:0] if fused else taken[-1],)

        hook = head.register_forward_pre_hook(select)
        try:
            extra = {BLOCKS: example_blocks(inputs["position_ids"])} if self.blocks else {}
            logits = model(input_ids=inputs["input_ids"], position_ids=inputs["position_ids"], use_cache=False,
                           **extra).logits
        finally:
            hook.remove()
        labels = target[target != IGNORE]
        if fused:  # the matmul autocast would run (a 4-bit base keeps its head in fp32)
            total = LinearCrossEntropy.apply(taken[-1].to(self.head_dtype), head.weight.to(self.head_dtype), labels,
                                             self.CHUNK)
        else:
            total = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels, reduction="sum")
        n = num_items_in_batch if num_items_in_batch is not None else keep.sum()
        loss = total / torch.as_tensor(n, device=total.device).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # DDP averages gradients; n counts every rank's tokens
        return (loss, {}) if return_outputs else loss

    def _track_num_input_tokens(self, inputs) -> None:
        self.state.num_input_tokens_seen += int(self.accelerator.gather(inputs["real_tokens"].to(self.args.device)).sum())


def example_blocks(position_ids: torch.Tensor) -> list[list[tuple[int, int, int, int]]]:
    """Packed rows' position ids -> per row, each example's attention block (start, end, and an empty prefix:
    causal on itself), as attention.py takes them; the padding at a row's end runs with its last example."""
    out = []
    for row in position_ids.tolist():
        starts = [i for i, p in enumerate(row) if p == 0] + [len(row)]
        out.append([(a, b, a, a) for a, b in zip(starts, starts[1:])])
    return out


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
        fused = fusable(model)  # then no logits are held per token
        # measured on the CPU; an accelerator runs one kernel over the row's mask
        blocks = cfg.packing and supported(models.unwrap(model).config) and model.device.type == "cpu"
        if blocks:
            attention.install()
        args = train.trainer_args(cfg, out, TrainingArguments, tokens_per_example=cfg.max_length,
                                  max_tokens=train.micro_batch_tokens(cfg, model, lm_head=not fused))
        trainer = LabelPositionsLoss(fused=fused, head_dtype=models.compute_dtype(cfg.dtype), blocks=blocks,
                                     model=model, args=args,
                                     processing_class=tokenizer, train_dataset=train_rows_packed,
                                     eval_dataset=layout(eval_set) if eval_set else None,
                                     data_collator=lambda rows: collate(tokenizer.pad_token_id, rows))
        train.use_our_callbacks(trainer, out)
        train_out = train.fit(trainer, out, cfg.resume)
        metrics = train.standard_metrics(trainer, train_out)
        if eval_set:
            metrics.update(train.evaluate_at_end(trainer))
        train.save_model(trainer.model, tokenizer, out, cfg.full)
        out.write(**train.model_fields(cfg, tokenizer, lineage, "causal"))
        out.finish(metrics)
    print(train.summarise(out, metrics), flush=True)
    return out.manifest
