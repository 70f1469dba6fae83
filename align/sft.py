"""Supervised fine-tuning: teach the model to answer like the demonstrations (InstructGPT step 1).

Read and validate the data -> tokenise with the chat template (loss on assistant turns, end-of-turn token
included) -> claim the run directory -> load base (+lineage) with a fresh LoRA -> TRL's SFTTrainer on our
pre-tokenised, packed rows -> save adapter, tokenizer and manifest.
"""

from __future__ import annotations

from typing import Any

from align import chat, data, models, train
from align.config import SFTConfig, to_dict
from align.errors import DataError
from align.runs import Run


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


def run(cfg: SFTConfig) -> dict[str, Any]:
    from datasets import Dataset
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    # 1. Everything that can be wrong with the input is found before a model or run directory exists.
    train_rows = data.load_sft(cfg.data)
    eval_rows = data.load_sft(cfg.eval_data) if cfg.eval_data else None
    lineage, tokenizer = models.tokenizer_for(cfg)
    train_set = encode_rows(train_rows, tokenizer, cfg)
    eval_set = encode_rows(eval_rows, tokenizer, cfg) if eval_rows else None
    if not train_set:
        raise DataError(cfg.data[0], "no training rows")

    with Run.open(cfg.output, "sft", cfg.overwrite, cfg.resume) as out:
        out.start(to_dict(cfg), data={"train": train_rows.files, "eval": eval_rows.files if eval_rows else []})
        model = models.prepare(cfg, "causal", lineage, tokenizer)
        args = train.trainer_args(
            cfg, out, TRLSFTConfig, tokens_per_example=cfg.max_length,
            max_tokens=train.micro_batch_tokens(cfg, model, lm_head=True),
            max_length=cfg.max_length,
            packing=cfg.packing,  # best-fit packing, padding-free: position_ids separate the examples
            dataset_kwargs={"skip_prepare_dataset": False},
            eos_token=None,
        )
        trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer,
                             train_dataset=Dataset.from_list(train_set),
                             eval_dataset=Dataset.from_list(eval_set) if eval_set else None)
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
