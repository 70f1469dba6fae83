"""LoRA's update added inside one GEMM (models.fuse_lora_adds) against peft's own forward, alternating in one
process (these machines drift; a ratio over rounds in one run is what holds).

    python bench/lora_fused.py [--rounds 6]

The embedded SmolLM2-135M with LoRA r16 all-linear at `--dtype auto` (B drawn non-zero, as after training):
    rm    an RM step on the first 16 HH-RLHF helpful pairs at 512 tokens, prefix sharing on (align rm's shape)
    dpo   the policy's forward + backward and the reference's forward on 8 pairs (align dpo's shape)
    ppo   a PPO micro-step: 8 rows x 70 tokens, forward + backward through the head's last 33 positions
Prints seconds per step each way, the ratio, and how far the fused side's outputs are from peft's.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from peft.tuners.lora.layer import Linear
from prefix_sharing import HH, lora

from align import config, data, dpo, models, reward_model, rm
from align.prefix_sharing import PrefixSharing


def cases(tok, dtype: str):
    loaded = data.load_pairs([str(HH)])
    loaded.rows = loaded.rows[:16]
    groups = rm.encode_groups(loaded, tok, 512, "left")[0]
    rm_batch = rm.collate_groups(groups, tok.pad_token_id)
    cfg = config.DPOConfig(max_length=512, max_prompt_length=256)
    counts = {"truncated_prompts": 0, "truncated_responses": 0}
    pairs = [dpo.encode_pair(tok, row.value, cfg, counts) for row in loaded.rows[:8]]
    dpo_rows = [p["prompt_ids"] + p[f"{side}_ids"] for side in ("chosen", "rejected") for p in pairs]
    dpo_batch = reward_model.pad_right(dpo_rows, tok.pad_token_id)
    ppo_ids = torch.randint(10, 40000, (8, 70), generator=torch.Generator().manual_seed(0))

    def rm_step(model, sharing):
        with sharing.over(rm_batch["groups"]):
            out = reward_model.sequence_rewards(model, rm_batch["input_ids"], rm_batch["attention_mask"])
        out.float().mean().backward()
        return out

    def dpo_step(model, sharing):
        shared = [[i, len(pairs) + i] for i in range(len(pairs))]
        with sharing.over(shared):
            out = model(**dpo_batch, use_cache=False).logits[:, -1].float()
            out.mean().backward()
            with torch.no_grad(), model.disable_adapter():
                model(**dpo_batch, use_cache=False)
        return out

    def ppo_step(model, sharing):
        out = model(input_ids=ppo_ids, use_cache=False, logits_to_keep=33).logits.float()
        out.log_softmax(-1).mean().backward()
        return out

    return {"rm": ("seq_cls", rm_step), "dpo": ("causal", dpo_step), "ppo": ("causal", ppo_step)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    models.set_threads()
    dtype = models.dtype_name("auto")
    tok = models.load_tokenizer(models.resolve("smollm2-135m"))
    print(f"dtype {dtype}, {torch.get_num_threads()} threads")
    for name, (kind, step) in cases(tok, dtype).items():
        model = lora(kind, dtype)  # run_in: the layers are fused
        torch.manual_seed(0)
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.data.normal_(0, 0.01)
        layers = [m for m in model.modules() if isinstance(m, Linear)]
        fused_class = type(layers[0])
        sharing = PrefixSharing(model)
        times, outs = {"peft": [], "fused": []}, {}
        for r in range(args.rounds + 1):  # the first round warms up, untimed
            for side in (("peft", "fused") if r % 2 else ("fused", "peft")):
                for m in layers:
                    m.__class__ = fused_class if side == "fused" else Linear
                model.zero_grad()
                t = time.perf_counter()
                outs[side] = step(model, sharing).detach()
                if r:
                    times[side].append(time.perf_counter() - t)
        med = {side: statistics.median(t) for side, t in times.items()}
        diff = float((outs["fused"] - outs["peft"]).abs().max() / outs["peft"].abs().max())
        print(f"{name}: s per step peft {med['peft']:.3f}, fused {med['fused']:.3f}: {med['peft'] / med['fused']:.2f}x; "
              f"outputs differ by {diff:.1e} of their largest (rounds: "
              f"{ {side: [round(x, 2) for x in t] for side, t in times.items()} })", flush=True)


if __name__ == "__main__":
    main()
