"""Plain-TRL side of the CPU speed comparison: TRL 1.16 + peft LoRA on SmolLM2-135M, one stage per run.

    python bench/trl_cpu.py STAGE VARIANT [--steps N] [--batch-size B] [--max-length L] [--data FILE...] [--model DIR]
    STAGE: sft | rm | dpo | rloo      VARIANT: default | tuned

    # quality on align's HH split: whole epochs over the given rows, then accuracy on held-out pairs
    python bench/trl_cpu.py rm default --epochs 1 --batch-size 16 --max-length 512 \
        --data "$HH/hh_helpful_online_test.jsonl.gz[:320]" \
        --eval-data "$HH/hh_helpful_online_test.jsonl.gz[-100:]" "$HH/hh_helpful_online_test.jsonl.gz[320:620]"

default  what a user gets: TRL's config defaults plus use_cpu=True, so TRL turns bf16 (autocast) and gradient
         checkpointing on; no packing.
tuned    bf16 on, gradient checkpointing off; SFT also packs (BFD packing, which TRL runs padding-free).
         DPO's padding_free is not set: TRL 1.16 ignores it ("temporarily unavailable", falls back to padding).

Model: SmolLM2-135M as align converts it (~/.cache/align/models/smollm2-135m), loaded in float32 like a user's
from_pretrained; LoRA r16 alpha 32 all-linear (SEQ_CLS for the RM). Data: SFT data/sft_train.jsonl; RM and DPO the
HH-RLHF helpful rejection-sampled test pairs (or data/pairs_train.jsonl); RLOO data/prompts_train.jsonl with a
SmolLM2-135M sequence-classification reward model (random head), 32-token completions, --batch-size completions
per step (num_generations per prompt: TRL's default 2, --generations to change). Files are read with align.data.

With --epochs, every row of --data trains (--steps is ignored) and the timed window runs to the last step; with
--eval-data, each file's pairwise (RM) or implicit-reward (DPO) accuracy after training is in the RESULT, beside
the pairs TRL kept of it (RewardTrainer drops pairs over max_length in evaluation too).

Timed window: end of step 1 to end of step N (steps 2..N; step 1 is warm-up). Tokens are the non-padding tokens
of the batches the model trained on (counted in compute_loss); for RLOO prompt + completion tokens, and generated
tokens separately. Prints one line: RESULT {json}.

TRL 1.16 behaviour to keep in mind when reading the numbers: RewardTrainer drops pairs longer than max_length
while DPOTrainer truncates them (and drops only pairs whose prompt alone fills max_length), so at one max_length
the two train on different pairs. bf16 on CPU means autocast: the frozen fp32 weights are cast to bf16 again at
every call, which is what makes RLOO's token-by-token generation slow.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
HH = "/work/shared/data/preference/hh_helpful_rejection_sampled_test.jsonl.gz"
DATA = {"sft": [str(REPO / "data/sft_train.jsonl")], "rm": [HH], "dpo": [HH],
        "rloo": [str(REPO / "data/prompts_train.jsonl")]}
BATCH = {"sft": 8, "rm": 16, "dpo": 8, "rloo": 16}
MODEL = os.path.expanduser("~/.cache/align/models/smollm2-135m")


def physical_cores() -> int:
    try:
        import psutil
        n = psutil.cpu_count(logical=False)
    except ImportError:
        n = None
    return max(1, min(n or os.cpu_count() or 1, len(os.sched_getaffinity(0))))


def load_rows(stage: str, files: list[str], limit: int) -> list[dict]:
    """Rows in TRL's conversational formats (messages / prompt+chosen+rejected / prompt), via align.data."""
    from align import data
    if stage == "sft":
        rows = data.load_sft(files).values()
    elif stage == "rloo":
        rows = data.load_prompts(files).values()
    else:  # HH dialogues are split into prompt + last answer; the 'margin'/'group' bookkeeping is dropped
        rows = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in data.load_pairs(files).values()]
    return rows[:limit]


class Meter(TrainerCallback):
    """Wall time and the counters compute_loss feeds, read at the end of step 1 and of step N."""

    def __init__(self, steps: int):
        self.steps, self.counts, self.t0, self.base, self.timed, self.seconds = steps, {}, None, {}, {}, None

    def add(self, **counts):
        for k, v in counts.items():
            self.counts[k] = self.counts.get(k, 0) + int(v)

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == 1:
            self.t0, self.base = time.perf_counter(), dict(self.counts)
        elif state.global_step == (self.steps or state.max_steps):
            self.seconds = time.perf_counter() - self.t0
            self.timed = {k: v - self.base.get(k, 0) for k, v in self.counts.items()}


def counted(trainer_cls, meter: Meter, count):
    """trainer_cls whose compute_loss reports count(inputs) (the batch the model trains on) to the meter."""
    class Counted(trainer_cls):
        def compute_loss(self, model, inputs, *args, **kwargs):
            if model.training:
                meter.add(**count(inputs))
            return super().compute_loss(model, inputs, *args, **kwargs)
    return Counted


def pair_count(inputs):  # RM and DPO batches: the chosen rows, then the rejected rows, right-padded
    return {"tokens": inputs["attention_mask"].sum(), "samples": inputs["input_ids"].shape[0] // 2}


def sft_count(inputs):
    if "attention_mask" in inputs:
        return {"tokens": inputs["attention_mask"].sum(), "samples": inputs["input_ids"].shape[0]}
    # padding-free (packed): one flat row, no padding; a sequence starts where position_ids is 0
    return {"tokens": inputs["input_ids"].numel(), "samples": (inputs["position_ids"] == 0).sum()}


def rloo_count(inputs):
    gen = inputs["completion_mask"].sum()
    return {"tokens": inputs["prompt_mask"].sum() + gen, "generated": gen, "samples": inputs["completion_ids"].shape[0]}


def common_args(a, tmp: str) -> dict:
    kw = dict(output_dir=tmp, max_steps=-1 if a.epochs else a.steps, per_device_train_batch_size=a.batch_size,
              use_cpu=True, save_strategy="no", report_to="none")
    if a.epochs:
        kw.update(num_train_epochs=a.epochs, per_device_eval_batch_size=a.batch_size)
    if a.variant == "tuned":
        kw.update(bf16=True, gradient_checkpointing=False)
    return kw


def lora(task: str):
    from peft import LoraConfig
    return LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type=task)


def eval_sets(a) -> dict | None:
    """--eval-data as TRL's named evaluation datasets (it prepares each one as it does the training rows)."""
    from datasets import Dataset
    return {f"set{i}": Dataset.from_list(load_rows(a.stage, [f], None)) for i, f in enumerate(a.eval_data)} or None


def sft(a, tok, rows, meter, tmp):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer
    extra = dict(packing=True) if a.variant == "tuned" else {}
    args = SFTConfig(max_length=a.max_length, **common_args(a, tmp), **extra)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    return counted(SFTTrainer, meter, sft_count)(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                                 processing_class=tok, peft_config=lora("CAUSAL_LM"), callbacks=[meter])


def rm(a, tok, rows, meter, tmp):
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer
    args = RewardConfig(max_length=a.max_length, **common_args(a, tmp))
    model = AutoModelForSequenceClassification.from_pretrained(a.model, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tok.pad_token_id
    return counted(RewardTrainer, meter, pair_count)(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                                     processing_class=tok, peft_config=lora("SEQ_CLS"), callbacks=[meter],
                                                eval_dataset=eval_sets(a))


def dpo(a, tok, rows, meter, tmp):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer
    args = DPOConfig(max_length=a.max_length, **common_args(a, tmp))
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    return counted(DPOTrainer, meter, pair_count)(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                                  processing_class=tok, peft_config=lora("CAUSAL_LM"), callbacks=[meter],
                                                eval_dataset=eval_sets(a))


def rloo(a, tok, rows, meter, tmp):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    from trl import RLOOConfig, RLOOTrainer
    # per_device_train_batch_size counts completions; one generation batch (= that many completions) per step
    args = RLOOConfig(max_completion_length=a.completion_length, **common_args(a, tmp),
                      **({"num_generations": a.generations} if a.generations else {}))
    policy = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    reward = AutoModelForSequenceClassification.from_pretrained(a.model, num_labels=1, dtype=torch.float32)
    reward.config.pad_token_id = tok.pad_token_id
    return counted(RLOOTrainer, meter, rloo_count)(model=policy, reward_funcs=reward, reward_processing_classes=tok,
                                                   args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                                                   peft_config=lora("CAUSAL_LM"), callbacks=[meter])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stage", choices=["sft", "rm", "dpo", "rloo"])
    p.add_argument("variant", choices=["default", "tuned"])
    p.add_argument("--steps", type=int, default=10, help="optimizer steps; steps 2..N are timed")
    p.add_argument("--batch-size", type=int, help="rows per step (RLOO: completions per step); default 8/16/8/16")
    p.add_argument("--max-length", type=int, default=512, help="SFT/RM/DPO max_length")
    p.add_argument("--completion-length", type=int, default=32, help="RLOO max_completion_length")
    p.add_argument("--generations", type=int, help="RLOO num_generations per prompt (default: TRL's)")
    p.add_argument("--data", nargs="+", help="data files (default per stage, see the docstring)")
    p.add_argument("--model", default=MODEL)
    p.add_argument("--epochs", type=float, help="train this many epochs over all --data rows (--steps ignored)")
    p.add_argument("--eval-data", nargs="+", default=[], help="RM/DPO: held-out pair files (slices allowed) to score "
                   "after training")
    a = p.parse_args()
    if a.eval_data and a.stage not in ("rm", "dpo"):
        p.error("--eval-data is for rm and dpo")
    if a.steps < 2 and not a.epochs:
        p.error("--steps must be at least 2 (step 1 is not timed)")
    a.batch_size = a.batch_size or BATCH[a.stage]
    threads = physical_cores()
    torch.set_num_threads(threads)
    start = time.perf_counter()

    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(a.model)
    # enough rows that no step repeats data (packing puts several rows in one sequence), few enough to tokenize fast
    rows = load_rows(a.stage, a.data or DATA[a.stage], limit=None if a.epochs else a.batch_size * (a.steps + 1) * 8)
    meter = Meter(0 if a.epochs else a.steps)
    held_out = {}
    with tempfile.TemporaryDirectory() as tmp:
        trainer = {"sft": sft, "rm": rm, "dpo": dpo, "rloo": rloo}[a.stage](a, tok, rows, meter, tmp)
        trainer.train()
        for i, f in enumerate(a.eval_data):  # TRL logs its accuracy (a mean of batch means), it does not return it
            trainer.evaluate(eval_dataset=f"set{i}")
            key = "eval_accuracy" if a.stage == "rm" else "eval_rewards/accuracies"
            held_out[f] = {"accuracy": trainer.state.log_history[-1][key], "pairs": len(trainer.eval_dataset[f"set{i}"])}
    t, s = meter.timed, meter.seconds
    res = dict(stage=a.stage, variant=a.variant, steps_timed=trainer.state.global_step - 1,
               tokens_per_s=round(t["tokens"] / s, 1), samples_per_s=round(t["samples"] / s, 3),
               generated_tokens_per_s=round(t["generated"] / s, 1) if "generated" in t else None,
               peak_rss_gib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
               seconds=round(s, 2), batch_size=a.batch_size,
               max_length=a.completion_length if a.stage == "rloo" else a.max_length, threads=threads,
               bf16=trainer.args.bf16, gradient_checkpointing=trainer.args.gradient_checkpointing,
               packing=bool(getattr(trainer.args, "packing", False)), total_s=round(time.perf_counter() - start, 1),
               train_rows=len(rows), train_pairs_kept=len(trainer.train_dataset), epochs=a.epochs,
               learning_rate=trainer.args.learning_rate, held_out=held_out)
    print("RESULT " + json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
