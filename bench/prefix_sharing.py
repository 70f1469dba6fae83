"""Prefix sharing on real pairs: a reward-model step and a DPO step with and without it, alternating in one
process in a rotating order (these machines drift, and a side timed right after another can gain or lose ~20%
by the order alone; a ratio from one run over several rounds is what holds).

    python bench/prefix_sharing.py [--pairs 8] [--reps 3] [--max-length 512]   # reps: a multiple of 3 (sides)

The embedded SmolLM2-135M with LoRA r16 all-linear at `--dtype auto`, the first HH-RLHF helpful pairs
(../shared/data/preference), encoded as the stages encode them:
    rm    a prompt's responses (align rm: left truncation), forward + backward of the sequence classifier
    dpo   prompt + chosen / rejected (align dpo: prompt cut to its last max_length/2 tokens), the policy's
          forward + backward and the reference's forward (adapter off), as TRL's DPOTrainer runs them
The loss is a stand-in (the mean of the outputs read): what is timed is the model, which is all sharing changes.
Sides, in turn: the padded batch; shared, attention block by block (the CPU's path); shared, attention through
the dense mask over the packed rows (an accelerator's path, and what the blocks replaced on the CPU). Prints
tokens the model ran and seconds per step, each side, and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from align import attention, config, data, dpo, models, reward_model, rm
from align.prefix_sharing import PrefixSharing

HH = Path(__file__).resolve().parents[2] / "shared" / "data" / "preference" / "hh_helpful_rejection_sampled_test.jsonl.gz"


def lora(kind: str, dtype: str):
    from peft import LoraConfig, get_peft_model

    model = models.load_base(models.resolve("smollm2-135m"), kind, dtype=dtype)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                             task_type="SEQ_CLS" if kind == "seq_cls" else "CAUSAL_LM"))
    models.upcast_trainable(model)
    models.run_in(model, models.compute_dtype(dtype))
    return model


def rm_step(model, batch):
    model(**batch, use_cache=False).logits.float().mean().backward()


def dpo_step(model, batch):
    model(**batch, use_cache=False).logits[:, -1].float().mean().backward()
    with torch.no_grad(), model.disable_adapter():
        model(**batch, use_cache=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-length", type=int, default=512)
    args = ap.parse_args()
    models.set_threads()
    dtype = models.dtype_name("auto")
    tok = models.load_tokenizer(models.resolve("smollm2-135m"))
    loaded = data.load_pairs([str(HH)])
    loaded.rows = loaded.rows[:args.pairs]
    rm_batch = rm.collate_groups(rm.encode_groups(loaded, tok, args.max_length, "left")[0], tok.pad_token_id)
    cfg = config.DPOConfig(max_length=args.max_length, max_prompt_length=args.max_length // 2)
    counts = {"truncated_prompts": 0, "truncated_responses": 0}
    pairs = [dpo.encode_pair(tok, row.value, cfg, counts) for row in loaded.rows]
    dpo_rows = [p["prompt_ids"] + p[f"{side}_ids"] for side in ("chosen", "rejected") for p in pairs]
    n = len(pairs)
    cases = {"rm": (lora("seq_cls", dtype), rm_batch, rm_batch["groups"], rm_step),
             "dpo": (lora("causal", dtype), reward_model.pad_right(dpo_rows, tok.pad_token_id), [[i, n + i] for i in range(n)],
                     dpo_step)}
    print(f"dtype {dtype}, {torch.get_num_threads()} threads, {n} HH pairs, max_length {args.max_length}")
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    for name, (model, batch, shared_groups, step) in cases.items():
        sharing = PrefixSharing(model)
        batch = {k: batch[k] for k in ("input_ids", "attention_mask")}
        seen = []
        hook = models.unwrap(model).get_input_embeddings().register_forward_hook(
            lambda m, a, o: seen.append(a[0].numel()))
        sides = {"padded": None, "shared, blocks": attention.sdpa, "shared, dense mask": sdpa_attention_forward}
        times, tokens = {side: [] for side in sides}, {}
        order = list(sides)
        for rep in range(args.reps + 1):  # the first round warms up, untimed
            k = rep % len(order)  # rotate: a side run right after another runs faster or slower here
            for side in order[k:] + order[:k]:
                kernel = sides[side]
                AttentionInterface._global_mapping["sdpa"] = kernel or attention.sdpa
                model.zero_grad()
                seen.clear()
                t = time.perf_counter()
                with sharing.over(shared_groups if kernel else None):
                    step(model, batch)
                if rep:
                    times[side].append(time.perf_counter() - t)
                tokens[side] = seen[0]
        AttentionInterface._global_mapping["sdpa"] = attention.sdpa
        hook.remove()
        real = int(batch["attention_mask"].sum())
        median = {side: statistics.median(t) for side, t in times.items()}
        print(f"{name}: {len(batch['input_ids'])} rows, {real} real tokens; padded batch {tokens['padded']} tokens, "
              f"shared {tokens['shared, blocks']}; s per step: " +
              ", ".join(f"{side} {m:.2f}" for side, m in median.items()) +
              f"; padded / shared (blocks) {median['padded'] / median['shared, blocks']:.2f}x, dense mask / blocks "
              f"{median['shared, dense mask'] / median['shared, blocks']:.2f}x (per rep: "
              f"{ {side: [round(x, 2) for x in t] for side, t in times.items()} })", flush=True)

if __name__ == "__main__":
    main()
