"""What the Trainer-based stages (SFT, RM, DPO) share: arguments, logging, resume, saving, the summary."""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from align import guard
from align.chat import end_of_turn_id, template_hash, tokenizer_hash
from align.models import compute_dtype, dtype_name, release_freed_memory
from align.runs import Run, is_main_process


def free_memory(device: torch.device) -> int:
    """Bytes the process may still allocate: free GPU memory, or the machine's available RAM (after this
    process returns what it freed: models.release_freed_memory)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    release_freed_memory()
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return 8 << 30


def bytes_per_token(model, dtype: torch.dtype, gradient_checkpointing: bool, lm_head: bool) -> float:
    """Activation memory one training token holds until backward (LoRA; SDPA attention, no score matrices).

    Measured on SmolLM2-135M on CPU: ~2.3 MB/token in fp32, i.e. ~16 x hidden + ~6.5 x intermediate values
    per layer. Recomputation keeps ~2 x hidden per layer (plus one layer redone); the LM head's logits add
    ~3 x vocab fp32 values (logits, log-softmax, gradient).
    """
    c = getattr(model, "config", None)
    c = getattr(c, "text_config", c)
    hidden, inter = c.hidden_size, getattr(c, "intermediate_size", 4 * c.hidden_size)
    width = dtype.itemsize
    per_layer = 16 * hidden + 6.5 * inter
    n = c.num_hidden_layers * (2 * hidden) + per_layer if gradient_checkpointing else c.num_hidden_layers * per_layer
    return n * width + (3 * c.vocab_size * 4 if lm_head else 0)


def micro_batch_tokens(cfg, model, lm_head: bool) -> int:
    """cfg.micro_batch_tokens, or when it is -1 (auto) the power of two that fits the activations of one
    pass in half the memory still free after loading the model (the rest: optimizer, eval, fragmentation)."""
    if cfg.micro_batch_tokens >= 0:
        return cfg.micro_batch_tokens
    device = next(model.parameters()).device
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else device
    free = free_memory(device)
    fits = free / 2 / bytes_per_token(model, compute_dtype(cfg.dtype), cfg.gradient_checkpointing, lm_head)
    tokens = 1 << max(9, min(17, int(math.log2(max(fits, 1)))))
    if is_main_process():
        print(f"[align] micro-batches of at most {tokens} tokens (from {free / 2**30:.1f} GiB free; "
              f"--micro-batch-tokens to set)", flush=True)
    return tokens


def micro_batching(cfg, tokens_per_example: int | None, max_tokens: int) -> tuple[int, int]:
    """(examples per forward/backward, accumulation steps) for `batch_size` examples per step, so that one
    pass holds at most `max_tokens` tokens (examples counted at their longest). The micro-batches are equal,
    so the accumulated gradient is the whole batch's: memory stays bounded as the batch grows, with no
    recomputation (gradient checkpointing) needed."""
    if not max_tokens or not tokens_per_example:
        return cfg.batch_size, cfg.grad_accum
    per = max(1, min(cfg.batch_size, max_tokens // tokens_per_example))
    while cfg.batch_size % per:
        per -= 1
    return per, cfg.grad_accum * (cfg.batch_size // per)


def trainer_args(cfg, run: Run, args_cls, tokens_per_example: int | None = None, max_tokens: int = 0,
                 **extra: Any):
    """A TRL config from our stage config: CPU/GPU, precision, micro-batching, checkpoints and logging."""
    cuda = torch.cuda.is_available()
    dtype = dtype_name(cfg.dtype)
    report_to = []
    if importlib.util.find_spec("tensorboard"):
        report_to = ["tensorboard"]
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(run.path / "tensorboard"))
    eval_steps = cfg.eval_steps or None
    per_device, accum = micro_batching(cfg, tokens_per_example, max_tokens)
    kwargs = dict(
        output_dir=str(run.checkpoints),
        use_cpu=not cuda,
        bf16=dtype == "bf16",
        fp16=dtype == "fp16",
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=per_device,
        per_device_eval_batch_size=per_device,
        gradient_accumulation_steps=accum,
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio of the total steps
        lr_scheduler_type=cfg.lr_scheduler,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        gradient_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing else None,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if eval_steps and cfg.eval_data else "no",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to=report_to,
        seed=cfg.seed,
        data_seed=cfg.seed,
        dataloader_num_workers=0,
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        logging_nan_inf_filter=False,  # a NaN loss is logged as NaN (and stops the run: DivergenceGuard)
    )
    args = args_cls(**{**kwargs, **extra})
    args.get_warmup_steps = functools.partial(warmup_steps, cfg.warmup_ratio)  # floor, not transformers' ceil
    return args


def warmup_steps(ratio: float, total_steps: int) -> int:
    """floor(ratio x total steps): a run shorter than 1/ratio steps has no warm-up. (transformers rounds up,
    and its warm-up starts at 0: a 1-step run took its only step at learning rate 0 and trained nothing.)"""
    return math.floor(ratio * total_steps + 1e-9)


def append_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    with open(path, "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))


class LogFile(TrainerCallback):
    """logs.jsonl in the run directory, one line per logging/eval step (main process only); PPO writes its
    iterations through `write`."""

    def __init__(self, path: Path):
        self.path = path

    def write(self, step: int, record: dict[str, Any]) -> None:
        append_jsonl(self.path, [{"step": step, "time": round(time.time(), 3), **record}])

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            self.write(state.global_step, {"epoch": round(state.epoch or 0, 4), **logs})


class Progress(ProgressCallback):
    """The Trainer's progress bar, with one compact line per logging step instead of a dict dump."""

    KEYS = ("loss", "eval_loss", "eval_accuracy", "accuracy", "rewards/accuracies", "eval_rewards/accuracies",
            "rewards/margins", "grad_norm", "learning_rate")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or self.training_bar is None or not logs:
            return
        parts = [f"step {state.global_step}/{state.max_steps}"]
        for key in self.KEYS:
            if key in logs:
                v = logs[key]
                parts.append(f"{key} {v:.3g}" if isinstance(v, float) else f"{key} {v}")
        self.training_bar.write("  ".join(parts))


class DivergenceGuard(TrainerCallback):
    """Stops a run whose training diverged (TrainingDiverged, exit 3; the manifest says failed), naming the
    step and what to change. The rules are align/guard.py's: every optimiser step's gradients are checked
    before they are applied (not finite: stop there; exactly zero: remembered), every logged loss against
    the first one and the zero-gradient steps it covers. Registered after LogFile: the last line is logged."""

    def __init__(self):
        self.first_loss: float | None = None
        self.zero_since: int | None = None  # first step of the current run of exactly-zero gradients
        self.bad_grads = 0  # non-finite gradients in a row (fp16: the loss scaler skips such steps)
        self.logged_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.logged_step = state.global_step  # a resumed run: its earlier steps were checked when they ran

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        norm = guard.grad_norm(model) if model is not None else None
        if norm is None:
            return
        step = state.global_step + 1
        if not math.isfinite(norm):
            self.bad_grads += 1
            if not args.fp16 or self.bad_grads > guard.FP16_SKIPS:
                raise guard.diverged(step, "the gradients are not finite (NaN or inf)", args.learning_rate)
            return
        self.bad_grads = 0
        self.zero_since = (self.zero_since or step) if norm == 0 else None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs:
            return
        grad = None if args.fp16 else logs.get("grad_norm")  # fp16: an overflowing step is skipped, not applied
        guard.check_log(state.global_step, logs["loss"], grad, self.first_loss, self.zero_since,
                        self.logged_step + 1, args.learning_rate)
        if self.first_loss is None:
            self.first_loss = logs["loss"]
        self.logged_step = state.global_step


class LastEvaluation(TrainerCallback):
    """The step and metrics of this process's latest evaluation (see `evaluate_at_end`)."""

    def __init__(self):
        self.step, self.metrics = -1, {}

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.step, self.metrics = state.global_step, dict(metrics or {})


def use_our_callbacks(trainer, run: Run) -> None:
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)  # the Trainer adds it when tqdm is off: a second, raw dict line
    trainer.add_callback(Progress())
    trainer.add_callback(LogFile(run.path / "logs.jsonl"))
    trainer.add_callback(DivergenceGuard())
    trainer.add_callback(LastEvaluation())


def evaluate_at_end(trainer) -> dict[str, float]:
    """The eval_* metrics of the final step. With --eval-steps the Trainer has just evaluated it (a step-based
    schedule always evaluates the last step): those are returned, not computed again (a second pass over the
    eval set, ~1 min for 99 HH pairs on 2 cores); otherwise it evaluates now."""
    last = next((c for c in trainer.callback_handler.callbacks if isinstance(c, LastEvaluation)), None)
    fresh = last and last.step == trainer.state.global_step and last.metrics
    return {k: v for k, v in (last.metrics if fresh else trainer.evaluate()).items() if k.startswith("eval_")}


def drop_logs_after(path: Path, step: int) -> None:
    """On resume, forget log lines of the steps that will be redone, so logs.jsonl reads as one run."""
    if path.exists():
        kept = [line for line in path.read_text().splitlines() if json.loads(line).get("step", 0) <= step]
        path.write_text("".join(line + "\n" for line in kept))


def fit(trainer, run: Run, resume: bool) -> dict[str, Any]:
    """Train (resuming exactly from the last complete checkpoint when asked); return train metrics."""
    ckpt = run.latest_checkpoint() if resume else None
    before = 0  # tokens trained on before this process (the checkpoint may be rotated away by the end)
    if resume and ckpt is None:
        print("[align] no complete checkpoint yet: starting this run from the beginning", flush=True)
    if ckpt:
        print(f"[align] resuming from {ckpt}", flush=True)
        drop_logs_after(run.path / "logs.jsonl", int(Path(ckpt).name.split("-")[-1]))
        state = json.loads((Path(ckpt) / "trainer_state.json").read_text())
        before = state.get("num_input_tokens_seen") or 0
        if state.get("max_steps") and state.get("global_step", 0) >= state["max_steps"]:
            # Killed while finishing: the Trainer's last checkpoint is the final step. Training from it would run
            # one step more; load it instead, and the stage saves and completes the run as it would have.
            from transformers import TrainerState

            print("[align] that checkpoint is the final step: finishing the run without training again", flush=True)
            trainer._load_from_checkpoint(ckpt)
            trainer.state = TrainerState.load_from_json(str(Path(ckpt) / "trainer_state.json"))
            return {}
    out = trainer.train(resume_from_checkpoint=ckpt)
    return {**out.metrics, "tokens_before_resume": before}  # train_runtime is this process's alone


def save_model(model, tokenizer, run: Run, full: bool = False, adapters: Sequence[str] = ("default",)) -> None:
    """adapter/ (LoRA, with any trained head) or model/ (full weights), and tokenizer/; safetensors only.

    Of a peft model with several adapters only `adapters` are saved (not TRL's "ref" copy, nor PPO's value or
    reward adapters); peft writes the one named "default" in adapter/ itself, any other in adapter/NAME/."""
    if not is_main_process():
        return
    extra = {"selected_adapters": list(adapters)} if hasattr(model, "peft_config") else {}
    model.save_pretrained(run.path / ("model" if full else "adapter"), safe_serialization=True, **extra)
    tokenizer.save_pretrained(run.path / "tokenizer")


def model_fields(cfg, tokenizer, lineage: dict[str, Any], kind: str) -> dict[str, Any]:
    """Manifest fields that tell later stages how to load and talk to this run's model."""
    return {"lineage": lineage, "model_kind": kind, "full": cfg.full, "load_in_4bit": cfg.load_in_4bit,
            "adapter": None if cfg.full else "adapter", "tokenizer": "tokenizer",
            "tokenizer_hash": tokenizer_hash(tokenizer), "template_hash": template_hash(tokenizer),
            "end_of_turn_id": end_of_turn_id(tokenizer)}


def log_history(trainer, key: str) -> list[float]:
    return [h[key] for h in trainer.state.log_history if key in h]


def summarise(run: Run, metrics: dict[str, Any]) -> str:
    parts = [f"{run.stage} done"]
    if "loss_start" in metrics:
        parts.append(f"loss {metrics['loss_start']:.3f} -> {metrics['loss_end']:.3f}")
    for key in ("eval_accuracy", "eval_mean_margin", "eval_implicit_accuracy"):
        if key in metrics and metrics[key] is not None and not (isinstance(metrics[key], float) and math.isnan(metrics[key])):
            parts.append(f"{key} {metrics[key]:.3f}")
    if metrics.get("tokens_per_s"):
        parts.append(f"{metrics['tokens_per_s']:.0f} tokens/s")
    if "train_runtime" in metrics:
        parts.append(f"{metrics['train_runtime']:.0f}s")
    parts.append(f"-> {run.path}")
    return " | ".join(parts)


def standard_metrics(trainer, train_out: dict[str, Any]) -> dict[str, Any]:
    losses = log_history(trainer, "loss")
    runtime = train_out.get("train_runtime") or 0.0  # of this process: a resumed run's own part
    tokens = trainer.state.num_input_tokens_seen or 0
    here = tokens - train_out.get("tokens_before_resume", 0)
    metrics = {"steps": trainer.state.global_step, "train_runtime": runtime, "tokens": tokens,
               "tokens_per_s": here / runtime if runtime else None}
    if losses:
        metrics.update(loss_start=losses[0], loss_end=losses[-1])
    return metrics
