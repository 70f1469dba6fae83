"""Stage configs: one dataclass per stage, filled from defaults <- YAML recipe <- command-line flags.

Every field is a flag (`lora_r` -> `--lora-r`) and a recipe key (`lora_r`). A recipe key that is not a
field is an error that names the file and the key: a typo must never be silently ignored.

Every value is checked here, once, when a config is made (`__post_init__` -> `validate`): each field's
allowed range or choices are declared with it (`opt(..., gt=0)`, `choices=...`; they also go into its
--help text), and the rules that tie fields together are each class's `cross_checks`. The command line,
recipes, `align recipe validate` and `align run`'s plan all build configs, so a bad value of any stage is
an error (exit 2) naming the stage, key and allowed range before any model loads or any stage trains.
Checks that need data or a model (a prompt file's row count, a run directory's manifest) live with the
stage or the pipeline plan.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from align.errors import ConfigError


# Learning-rate schedules: the transformers SchedulerType names that run with no extra arguments (the
# others need lr_scheduler_kwargs or an eval metric at every step, which no stage passes).
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt")
DTYPES = ("auto", "bf16", "fp16", "fp32")
KL_ESTIMATORS = ("k1", "k2", "k3")
# TRL 1.16's DPO losses (its DPOConfig.loss_type), and those of them that read label_smoothing.
DPO_LOSSES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")
DPO_SMOOTHED_LOSSES = ("robust", "exo_pair", "aot", "aot_unpaired")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True)
class Check:
    """The values one option accepts: a range (gt/ge/lt/le), or choices; `special` values are accepted
    besides the range (e.g. -1 for 'auto'). None (an optional option left unset) always passes; a list is
    checked item by item; a float must be finite."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: tuple = ()
    special: tuple = ()

    def ok(self, value: Any) -> bool:
        if value is None:
            return True
        if isinstance(value, list):
            return all(self.ok(v) for v in value)
        if value in self.special:
            return True
        if self.choices:
            return value in self.choices
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return ((self.gt is None or value > self.gt) and (self.ge is None or value >= self.ge)
                and (self.lt is None or value < self.lt) and (self.le is None or value <= self.le))

    def describe(self) -> str:
        if self.choices:
            names = [str(c) for c in self.choices]
            return f"{names[0]!r} or {names[1]!r}" if len(names) == 2 else "one of: " + ", ".join(names)
        low = (self.gt, "(", ">") if self.gt is not None else (self.ge, "[", ">=") if self.ge is not None else None
        high = (self.lt, ")", "<") if self.lt is not None else (self.le, "]", "<=") if self.le is not None else None
        if low and high:
            text = f"in {low[1]}{_num(low[0])}, {_num(high[0])}{high[1]}"
        elif low or high:
            bound, _, op = low or high
            text = f"{op} {_num(bound)}"
        else:
            text = "any value"
        return " or ".join([*map(_num, self.special), text])

    def message(self, key: str, value: Any) -> str:
        if self.choices and len(self.choices) > 2:
            close = difflib.get_close_matches(str(value), [str(c) for c in self.choices], n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            return f"unknown {key} {value!r} ({hint}{self.describe()})"
        return f"{key} must be {self.describe()}, got {value!r}"


def opt(default: Any, help: str, flag: str | None = None, *, gt: float | None = None, ge: float | None = None,
        lt: float | None = None, le: float | None = None, choices: tuple | list = (), special: tuple = ()) -> Any:
    """A config field with its help text (and, rarely, a flag name that differs from the field's) and the
    values it accepts: a range (gt/ge/lt/le: >, >=, <, <=), `choices`, `special` values besides the range."""
    check = Check(gt, ge, lt, le, tuple(choices), tuple(special))
    metadata = {"help": help, "flag": flag, "check": check if check != Check() else None}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def allowed(f: dataclasses.Field) -> str | None:
    """The values a field accepts, for --help ('> 0', 'one of: ...'); None when any value of its type is."""
    check = f.metadata.get("check")
    return check.describe() if check else None


@dataclass
class ModelConfig:
    """What every stage shares: where the model comes from, how it is adapted, where the run goes."""

    model: str | None = opt(None, "Base model: hub id, local path, or the offline alias 'smollm2-135m'.")
    from_run: str | None = opt(None, "Start from a previous run directory (its base + adapters).", flag="from")
    output: str | None = opt(None, "Run directory to write.")
    overwrite: bool = opt(False, "Replace an existing run directory.")
    resume: bool = opt(False, "Continue an interrupted run from its last checkpoint.")
    trust_remote_code: bool = opt(False, "Allow a hub model's own Python code to run (off: it is code you did not read).")
    cache_dir: str | None = opt(None, "Where converted embedded models live (default: ~/.cache/align).")
    full: bool = opt(False, "Full fine-tuning instead of LoRA.")
    load_in_4bit: bool = opt(False, "QLoRA: load the frozen base in 4-bit NF4 (bitsandbytes).")
    lora_r: int = opt(16, "LoRA rank.", ge=1)
    lora_alpha: int = opt(32, "LoRA alpha (scale = alpha / r).", ge=1)
    lora_dropout: float = opt(0.0, "LoRA dropout (torchtune's default 0; 0.05 costs ~5% of a CPU step in random masks).",
                              ge=0, lt=1)
    lora_targets: list[str] = opt(["all-linear"], "Modules that get LoRA adapters ('all-linear' = every linear layer but the head).")
    dtype: str = opt("auto", "Compute dtype: auto (bf16 on a GPU that has it or a CPU where bf16 matmuls measure "
                             ">= 1.3x fp32, else fp32), bf16, fp16, fp32.",
                     choices=DTYPES)
    seed: int = opt(42, "Random seed.", ge=0, lt=2**32)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Every field against its declared range or choices, then the rules that tie fields together."""
        for f in dataclasses.fields(self):
            check = f.metadata.get("check")
            value = getattr(self, f.name)
            if check and not check.ok(value):
                raise ConfigError(check.message(f.name, value))
        self.cross_checks()

    def cross_checks(self) -> None:
        if self.model and self.from_run:
            raise ConfigError("give model or from, not both (from takes the base model from the run's manifest)")
        if self.resume and self.overwrite:
            raise ConfigError("give resume or overwrite, not both")


@dataclass
class TrainConfig(ModelConfig):
    """Optimisation settings shared by the stages that train with a Trainer."""

    data: list[str] = opt([], "Training data file: jsonl, json, csv, parquet, or a saved `datasets` directory "
                                  "(repeat --data for several).")
    eval_data: list[str] = opt([], "Held-out data file(s), same formats.")
    max_length: int = opt(1024, "Longest tokenised example.", ge=1)
    learning_rate: float = opt(2e-4, "Peak learning rate.", gt=0)
    epochs: float = opt(1.0, "Passes over the data.", gt=0)
    max_steps: int = opt(-1, "Stop after this many optimiser steps (-1: run the epochs).", ge=1, special=(-1,))
    batch_size: int = opt(8, "Examples per device per step.", ge=1)
    grad_accum: int = opt(1, "Gradient accumulation steps.", ge=1)
    micro_batch_tokens: int = opt(-1, "Most tokens (padding included) one forward/backward holds: a bigger batch runs as "
                                      "micro-batches whose gradients add up to the batch's, so memory stays bounded "
                                      "without gradient checkpointing. -1: sized from the memory free after loading "
                                      "the model; 0: no limit.", ge=-1)
    warmup_ratio: float = opt(0.03, "Share of steps for linear warm-up: floor(ratio x steps) steps, so a run "
                                    "shorter than 1/ratio steps has none.", ge=0, lt=1)
    lr_scheduler: str = opt("cosine", "Learning-rate schedule.", choices=SCHEDULERS)
    weight_decay: float = opt(0.0, "AdamW weight decay.", ge=0)
    max_grad_norm: float = opt(1.0, "Gradient clipping norm (0: no clipping).", ge=0)
    gradient_checkpointing: bool = opt(False, "Recompute activations in backward: less memory, ~30% slower.")
    logging_steps: int = opt(10, "Log every N steps.", ge=1)
    eval_steps: int = opt(0, "Evaluate every N steps (0: at the end only).", ge=0)
    save_steps: int = opt(100, "Checkpoint every N steps (for --resume; 0: none).", ge=0)
    save_total_limit: int = opt(2, "Checkpoints kept.", ge=1)


@dataclass
class SFTConfig(TrainConfig):
    """Supervised fine-tuning on demonstrations."""

    learning_rate: float = opt(2e-4, "Peak learning rate.", gt=0)
    completion_only_loss: bool = opt(True, "Loss on the assistant's tokens only (the end-of-turn token included).")
    packing: bool = opt(True, "Pack examples into padding-free rows (no compute spent on padding).")
    truncate: bool = opt(False, "Cut over-long examples to max_length instead of refusing them.")


@dataclass
class PairConfig(TrainConfig):
    """What the stages that learn from comparisons share."""

    prefix_sharing: bool = opt(True, "Run the prompt a comparison's responses share once, not once per response (a "
                                      "mask keeps the responses apart; same results up to float rounding): ~1.5x "
                                      "fewer tokens on HH-RLHF. Off by itself where it would not be exact: "
                                      "attention other than SDPA, sliding windows, mixture-of-experts.")


@dataclass
class RMConfig(PairConfig):
    """Reward model: a scalar score head trained on comparisons with the Bradley-Terry loss.

    Defaults suit a small model (SmolLM2-135M) with LoRA: a LoRA learning rate (~20x InstructGPT's full
    fine-tuning 9e-6; the fresh score head trains with it too), two epochs (on a few thousand HH pairs the
    second pass still raised held-out accuracy; InstructGPT's one pass is about far larger sets), and 1024
    tokens, which hold ~95% of HH-RLHF helpful conversations whole with SmolLM2's template (median ~340);
    longer ones lose their oldest prompt tokens, not the answer.
    """

    learning_rate: float = opt(2e-4, "Peak learning rate (LoRA; the score head trains with it; full FT wants ~1e-5). "
                                     "HH sweep at 320 pairs (bench/quality/RESULTS.md): held-out accuracy 0.60 "
                                     "beside 0.56 at 1e-3 (within noise) and 0.48 at 5e-5.",
                               gt=0)
    epochs: float = opt(2.0, "Passes over the pairs: two, where InstructGPT's one pass is about tens of thousands "
                             "of pairs. Measured on HH (bench/quality/RESULTS.md 2): at 320 pairs from the base, 2 "
                             "epochs ranked 300 held-out pairs 0.61 against 0.54 for one (from SFT 0.58 both); on "
                             "both HH files (3,750 pairs, 99 held out) 0.63 against 0.56 for a 1-epoch run. On far "
                             "larger sets try 1.",
                        gt=0)
    batch_size: int = opt(16, "Comparison pairs per step; a prompt's pairs are never split across steps (not swept).",
                          ge=1)
    max_length: int = opt(1024, "Longest prompt+response in tokens (see truncation); set from HH-RLHF's lengths "
                                "(above). HH sweep at 320 pairs: 256, 320 and 512 within noise of each other (0.57, "
                                "0.54, 0.58 on 300 held-out pairs). Score at the length you train at.", ge=1)
    truncation: str = opt("left", "Over-long conversations: 'left' drops the oldest prompt tokens and keeps the "
                                  "response and its end-of-turn token (a pair whose response alone is too long "
                                  "is dropped); 'drop' skips every over-long pair. Counted either way.",
                         choices=("left", "drop"))
    center_rewards_coef: float = opt(0.01, "Weight of mean((r_chosen + r_rejected)^2) (Eisenstein et al. 2023): "
                                           "pins the reward's free offset near 0, so PPO's reward scale is stable.",
                                     ge=0)


@dataclass
class DPOConfig(PairConfig):
    """Direct preference optimisation from the SFT model (the reference is the SFT model exactly).

    LoRA needs a far higher learning rate than full fine-tuning: at the 5e-6 that full-FT recipes use, a
    LoRA policy barely moves (plain TRL's implicit-reward accuracy stays at 0.50 on HH with SmolLM2-135M).
    """

    learning_rate: float = opt(1e-4, "Peak learning rate (LoRA; full fine-tuning wants ~5e-7..5e-6). HH sweep at 160 "
                                     "pairs (bench/quality/RESULTS.md): accuracy at chance for 1e-4 and 5e-4 alike; "
                                     "5e-4 raised the held-out loss above ln 2, 1e-4 lowered it. One epoch of both "
                                     "HH files (3,751 pairs) at 1e-4: 0.515 held-out, at chance.", gt=0)
    beta: float = opt(0.1, "Strength of the tie to the reference (higher: stay closer). For IPO it is tau. HH sweep "
                            "at 160 pairs: 0.5 raised the held-out loss above ln 2, 0.1 lowered it; accuracy at "
                            "chance for both.", gt=0)
    loss_type: str = opt("sigmoid", "sigmoid (DPO), ipo (beta is its tau), hinge, robust (noisy labels), or another "
                                    "TRL 1.16 DPO loss.", choices=DPO_LOSSES)
    label_smoothing: float = opt(0.0, "Assumed share of flipped labels: for loss_type " + ", ".join(DPO_SMOOTHED_LOSSES)
                                      + "; an error with losses that ignore it, plain sigmoid included.", ge=0, lt=0.5)
    sft_loss_weight: float = opt(0.0, "Add the chosen responses' mean token NLL with this weight (RPO, SFT-regularised "
                                      "DPO: TRL's 'sft' loss beside loss_type).", ge=0)
    max_prompt_length: int = opt(512, "Longer prompts are cut from the left: they keep their end (the last turn and the "
                                      "generation prompt). Counted. Below max_length.", ge=1)
    max_length: int = opt(1024, "Prompt + response limit; a longer response is cut from the right to fit, losing its "
                                "end-of-turn token. Counted.", ge=2)
    precompute_ref_log_probs: bool = opt(False, "Compute the reference log-probs once before training (with --full: "
                                                "no frozen copy of the model is kept).")
    judge: str | None = opt(None, "An `align rm` run: after training, score the saved policy's and the SFT model's "
                                  "greedy answers to the eval pairs' prompts, cut at max_prompt_length (as `align eval "
                                  "--max-prompt-length` does); reports both mean "
                                  "rewards, the win rate and the KL to the SFT model.")
    judge_max_new_tokens: int = opt(64, "Answer length for --judge.", ge=1)
    epochs: float = opt(1.0, "Passes over the pairs. HH sweep from SFT at 320 pairs (bench/quality/RESULTS.md): "
                             "2 epochs 0.54 implicit accuracy on 300 held-out pairs against 0.53 for one (within "
                             "noise) while the training loss fell to 0.56: more passes fit the pairs, not the "
                             "held-out ones; one epoch of both HH files was at chance too.", gt=0)
    batch_size: int = opt(8, "Pairs per device per step (not swept).", ge=1)

    def cross_checks(self) -> None:
        super().cross_checks()
        if self.max_prompt_length >= self.max_length:
            raise ConfigError(f"max_prompt_length ({self.max_prompt_length}) must be between 1 and max_length "
                              f"({self.max_length}) minus 1: the response needs room")
        if self.label_smoothing and self.loss_type not in DPO_SMOOTHED_LOSSES:
            raise ConfigError(f"label_smoothing has no effect with loss_type '{self.loss_type}' (only "
                              f"{', '.join(DPO_SMOOTHED_LOSSES)} use it; for noisy labels use loss_type robust)")
        if self.loss_type == "exo_pair" and not self.label_smoothing:
            raise ConfigError("loss_type exo_pair needs label_smoothing > 0 (its paper suggests 1e-3)")
        if self.judge and self.full:
            raise ConfigError("judge compares the policy with its reference by switching the adapter off; full "
                              "fine-tuning has no adapter (judge it afterwards with `align eval`)")
        if self.judge and not self.eval_data:
            raise ConfigError("judge scores answers to the eval pairs' prompts: give eval_data too")


@dataclass
class PPOConfig(ModelConfig):
    """RLHF with PPO against a reward model (or a Python reward function), KL-penalised to the SFT model.

    Defaults follow InstructGPT/Ziegler et al. scaled to LoRA: a LoRA learning rate ~10x a full-FT one,
    per-token k1 KL penalty, GAE with gamma 1 (episodic, reward at the end), 4 PPO epochs per batch.
    """

    prompts: list[str] = opt([], "Prompt file(s) for rollouts: {prompt} (text or messages), {messages} or {text}.")
    eval_prompts: list[str] = opt([], "Held-out prompts: reward before vs after training is measured on them.")
    comparison_prompts: bool = opt(False, "Take the prompts of comparison files (pairs, HH-RLHF dialogues) given as "
                                          "prompts; their answers are ignored.")
    reward: str | None = opt(None, "Reward: an `align rm` run directory, or a Python function 'module:function' "
                                   "(prompts, responses -> floats), imported only because you named it.")
    steps: int = opt(100, "PPO iterations (each: one batch of rollouts, then ppo_epochs of updates; not swept).",
                     ge=1)
    rollout_batch_size: int = opt(16, "Prompts per iteration (one response each); at most the number of prompts "
                                      "(not swept).", ge=1)
    mini_batch_size: int = opt(8, "Responses per optimiser step (at most rollout_batch_size; not swept).", ge=1)
    micro_batch_size: int = opt(8, "Responses per forward/backward (gradient accumulation inside a minibatch; at "
                                   "most mini_batch_size).", ge=1)
    ppo_epochs: int = opt(4, "Passes over each rollout batch (4 vs 2 measured within noise of each other on a rule reward; "
                                 "2 is 1.5x faster an iteration: bench/quality/RESULTS.md).", ge=1)
    max_prompt_length: int = opt(256, "Longer prompts keep their last tokens (left truncation). Counted.", ge=1)
    max_new_tokens: int = opt(64, "Response length limit.", ge=1)
    temperature: float = opt(1.0, "Sampling temperature for rollouts (1.0: the policy's own distribution).", gt=0)
    top_p: float = opt(1.0, "Nucleus sampling for rollouts (1.0: off).", gt=0, le=1)
    top_k: int = opt(0, "Top-k sampling for rollouts (0: off).", ge=0)
    missing_eos_penalty: float = opt(1.0, "Subtracted from the score of a response that never emits end-of-turn.",
                                     ge=0)
    learning_rate: float = opt(1e-4, "Policy (LoRA) learning rate. Rule-reward sweep, 10 iterations "
                                  "(bench/quality/RESULTS.md): 1e-4 gained 0.04 reward per nat of KL; 3e-4 moved the "
                                  "policy 2.5x further (5.2 nats) and gained nothing.", gt=0)
    value_learning_rate: float = opt(1e-4, "Value model (LoRA + head) learning rate (not swept).", gt=0)
    value_model: str = opt("adapter", "adapter: the value model is its own LoRA adapter on the base, initialised "
                           "from the reward model when that shares the base (InstructGPT's separate critic). policy: "
                           "a value head on the policy's hidden states (trlx's and early TRL's design): one "
                           "forward/backward serves both, so updates take about half the time, but the value loss "
                           "also trains the policy's adapter (on a rule reward: no gain in 10 iterations; "
                           "bench/quality/RESULTS.md).", choices=["adapter", "policy"])
    lr_scheduler: str = opt("constant", "Learning-rate schedule over all updates.", choices=SCHEDULERS)
    kl_coef: float = opt(0.05, "Initial KL penalty coefficient (beta). Rule-reward sweep at lr 3e-4: 0.2 held "
                                  "the KL to a third of 0.05's (1.8 vs 5.2 nats), neither gained reward in 10 "
                                  "iterations (bench/quality/RESULTS.md); not swept on a reward model.", ge=0)
    kl_estimator: str = opt("k1", "Per-token KL estimator for the penalty: k1 (log ratio), k3 (non-negative), k2.",
                            choices=KL_ESTIMATORS)
    adaptive_kl: bool = opt(False, "Adapt kl_coef towards target_kl (Ziegler et al. 2019).")
    target_kl: float = opt(6.0, "Target sequence KL (nats) for the adaptive controller.", gt=0)
    kl_horizon: int = opt(10000, "Adaptive controller horizon (episodes).", ge=1)
    normalize_reward: bool = opt(True, "Standardise scores with the reward model's recorded training mean/std.")
    whiten_rewards: bool = opt(False, "Also whiten scores within each rollout batch.")
    reward_clip: float = opt(0.0, "Clip (normalised) scores to [-c, c] (0: off).", ge=0)
    gamma: float = opt(1.0, "Discount.", ge=0, le=1)
    lam: float = opt(0.95, "GAE lambda.", ge=0, le=1)
    whiten_advantages: bool = opt(True, "Whiten advantages per batch.")
    clip_range: float = opt(0.2, "Policy ratio clip.", gt=0)
    clip_range_value: float = opt(0.2, "Value clip around the rollout-time values.", gt=0)
    vf_coef: float = opt(0.1, "Value loss weight.", ge=0)
    entropy_coef: float = opt(0.0, "Entropy bonus weight (0: off).", ge=0)
    max_grad_norm: float = opt(1.0, "Gradient clipping norm.", gt=0)
    target_approx_kl: float = opt(0.0, "Stop an iteration's PPO epochs early when approx KL exceeds this (0: off).",
                                  ge=0)
    gradient_checkpointing: bool = opt(False, "Recompute activations in the update: less memory, slower.")
    logging_steps: int = opt(1, "Log every N iterations.", ge=1)
    sample_steps: int = opt(10, "Print and save a few sample completions every N iterations (0: never).", ge=0)
    save_steps: int = opt(20, "Checkpoint every N iterations (for --resume; 0: none).", ge=0)
    snapshot_steps: int = opt(0, "Keep the policy adapter every N iterations in snapshots/ (align eval then draws "
                                 "judge reward against KL over training; 0: none).", ge=0)

    def cross_checks(self) -> None:
        super().cross_checks()
        if not self.micro_batch_size <= self.mini_batch_size <= self.rollout_batch_size:
            raise ConfigError(f"need micro_batch_size <= mini_batch_size <= rollout_batch_size, got "
                              f"{self.micro_batch_size}, {self.mini_batch_size}, {self.rollout_batch_size}")
        if self.full:
            raise ConfigError("PPO trains LoRA adapters on one shared base (its memory design); full fine-tuning "
                              "is not supported")


STAGES: dict[str, type] = {"sft": SFTConfig, "rm": RMConfig, "dpo": DPOConfig, "ppo": PPOConfig}


# --- recipe loading --------------------------------------------------------------------------------

def fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or f.name.replace("_", "-")


def _type_of(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert a recipe value to the field's type; the error names where it came from."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (tp,) = [a for a in args if a is not type(None)]
        return coerce(value, tp, where)
    if origin is list:
        items = value if isinstance(value, list) else [value]
        return [coerce(v, args[0], where) for v in items]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise ConfigError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r}")


def read_recipe(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read recipe ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of keys to values")
    return loaded


def override(recipe: dict[str, Any], assignments: list[str] | None) -> dict[str, Any]:
    """`--set stages.rm.data=FILE` (repeatable): dotted keys into the recipe, each value read as YAML (a number,
    a list `[a, b]`, a string). A new copy; the recipe file is untouched."""
    out = copy.deepcopy(recipe)  # not a JSON round trip: YAML has dates, which JSON does not
    for item in assignments or []:
        key, eq, text = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. stages.sft.data=my.jsonl")
        *parents, last = key.split(".")
        node = out
        for part in parents:
            if not isinstance(node.setdefault(part, {}), dict):
                raise ConfigError(f"--set {item!r}: '{part}' is not a mapping in this recipe")
            node = node[part]
        try:
            node[last] = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({e})") from None
    return out


def check_keys(cls: type, values: dict[str, Any], source: str) -> None:
    known = fields(cls)
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{source}: unknown key '{key}' for this stage{hint}")


def build(cls: type, recipe: dict[str, Any] | None = None, flags: dict[str, Any] | None = None,
          source: str = "recipe") -> Any:
    """defaults <- recipe <- flags (flags left as None were not given). Relative data paths stay as given."""
    recipe = dict(recipe or {})
    if "from" in recipe:  # the recipe may use the flag's spelling
        recipe["from_run"] = recipe.pop("from")
    check_keys(cls, recipe, source)
    values = {k: coerce(v, _type_of(cls, k), f"{source}: key '{k}'") for k, v in recipe.items()}
    values.update({k: v for k, v in (flags or {}).items() if v is not None})
    try:
        return cls(**values)  # validates every value (__post_init__)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
