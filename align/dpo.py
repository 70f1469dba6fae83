"""Direct preference optimisation: train the SFT policy straight on preference pairs (Rafailov et al. 2023).

Read and validate comparisons (the RM stage's loader: pairs, HH-RLHF dialogues, rankings -> pairs) ->
tokenise prompt / chosen / rejected ourselves with the chat template, split at the token level, each
response ending at its end-of-turn token -> claim the run directory -> base + SFT lineage merged with a
fresh LoRA on top: with the adapter disabled that is the SFT model exactly, and it is the reference ->
TRL's DPOTrainer, its chosen and rejected rows running their prompt once (prefix sharing) -> implicit-reward
accuracy, margins and log-probs on the eval pairs before and after -> save the adapter -> optionally, a
reward model judges the saved policy's answers against the SFT model's.
"""

from __future__ import annotations

import collections
import contextlib
import copy
from typing import Any

from align import chat, data, evaluate, models, reward_model, train
from align.config import DPOConfig, to_dict
from align.errors import DataError
from align.prefix_sharing import PrefixSharing, common_prefix
from align.runs import Run


def encode_pair(tokenizer, v: dict[str, Any], cfg: DPOConfig, counts: dict[str, int]) -> dict[str, list[int]]:
    """prompt_ids / chosen_ids / rejected_ids through our chat template, never a character-level split.

    The prompt is the token prefix that the prompt alone (with its generation prompt) shares with both
    conversations, so prompt + response is exactly the conversation's tokens, ending at the response's
    end-of-turn token: the model is taught to stop. A prompt over max_prompt_length keeps its end (the last
    turn and the generation prompt; a BOS token stays); a response that still does not fit max_length loses
    its end (and with it the end-of-turn token). Both are counted.
    """
    prompt = chat.prompt_ids(tokenizer, v["prompt"])
    full = {side: chat.conversation_ids(tokenizer, v["prompt"], v[side]) for side in ("chosen", "rejected")}
    n = min(common_prefix([prompt, ids]) for ids in full.values())
    counts["truncated_prompts"] += n > cfg.max_prompt_length
    prompt_ids = chat.truncate_left(tokenizer, prompt[:n], cfg.max_prompt_length)
    room = cfg.max_length - len(prompt_ids)
    out = {"prompt_ids": prompt_ids}
    for side, ids in full.items():
        counts["truncated_responses"] += len(ids) - n > room
        out[f"{side}_ids"] = ids[n:][:room]
    return out


def encode_pairs(loaded: data.Loaded, tokenizer, cfg: DPOConfig) -> tuple[list[dict], dict[str, int]]:
    counts = {"pairs": len(loaded.rows), "truncated_prompts": 0, "truncated_responses": 0}
    return [encode_pair(tokenizer, row.value, cfg, counts) for row in loaded.rows], counts


def trl_options(cfg: DPOConfig) -> dict[str, Any]:
    """Our flat options -> TRL's (the values were checked when the config was made: DPOConfig.cross_checks)."""
    options = {"loss_type": [cfg.loss_type], "beta": cfg.beta, "label_smoothing": cfg.label_smoothing,
               "max_length": cfg.max_length, "truncation_mode": "keep_start",  # a no-op: rows already fit
               "precompute_ref_log_probs": cfg.precompute_ref_log_probs}
    if cfg.sft_loss_weight:  # RPO: TRL 1.16 adds the chosen responses' mean token NLL as a second loss
        options.update(loss_type=[cfg.loss_type, "sft"], loss_weights=[1.0, cfg.sft_loss_weight])
    return options


def judge_policy(cfg: DPOConfig, out: Run, eval_rows: data.Loaded) -> dict[str, Any]:
    """The saved policy's and the SFT model's greedy answers to the held-out prompts, scored by the reward model.

    Reuses `align eval`'s policy evaluation on the run as written, the prompts cut at max_prompt_length as in
    training, so the numbers match `align eval --max-prompt-length` with the same value.
    """
    prompts = list({repr(v["prompt"]): v["prompt"] for v in eval_rows.values()}.values())  # a ranking's pairs share one
    result = evaluate.evaluate_policy(str(out.path), prompts, reward_model.load_reward_model(cfg.judge),
                                      cfg.judge_max_new_tokens, max_prompt_length=cfg.max_prompt_length)
    return {"judge_prompts": len(prompts), "judge_reward": result["reward"],
            "judge_reference_reward": result["reference_reward"], "judge_win_rate": result["win_rate"],
            "judge_kl_to_reference": result["kl_to_reference"], "judge_truncated_prompts": result["truncated_prompts"]}


def load_inputs(cfg: DPOConfig) -> tuple:
    """Everything that can be wrong with the input or the options, found before a model or run dir exists.
    -> (trl options, train rows, eval rows, lineage, tokenizer, train set, eval set, counts, eval counts)"""
    options = trl_options(cfg)
    train_rows = data.load_pairs(cfg.data)
    eval_rows = data.load_pairs(cfg.eval_data) if cfg.eval_data else None
    lineage, tokenizer = models.tokenizer_for(cfg)
    if cfg.judge:  # with full fine-tuning or without eval data, the config refuses --judge
        reward_model.require_rm_run(cfg.judge, tokenizer, f"--judge {cfg.judge}")
    train_set, counts = encode_pairs(train_rows, tokenizer, cfg)
    eval_set, eval_counts = encode_pairs(eval_rows, tokenizer, cfg) if eval_rows else (None, {})
    if not train_set:
        raise DataError(cfg.data[0], "no usable preference pairs" + (f" (skipped: {train_rows.skipped})"
                                                                      if train_rows.skipped else ""))
    print(f"[align] {len(train_set)} training pairs" + "".join(
        f", {k.replace('_', ' ')}: {v}" for k, v in {**train_rows.skipped, **counts}.items() if k != "pairs" and v),
        flush=True)
    return options, train_rows, eval_rows, lineage, tokenizer, train_set, eval_set, counts, eval_counts


def build_trainer(cfg: DPOConfig, out: Run, lineage: dict[str, Any], tokenizer, options: dict[str, Any],
                  train_set: list[dict], eval_set: list[dict] | None):
    """The policy: SFT lineage merged into the base + a fresh (zero-output) LoRA, in TRL's DPOTrainer. Full
    fine-tuning keeps a frozen copy as the reference (TRL would otherwise reload the bare base by name), unless
    the reference log-probs are precomputed from the untrained model before the first step."""
    from datasets import Dataset
    from trl import DPOConfig as TRLDPOConfig
    from trl import DPOTrainer

    class PreTokenizedDPOTrainer(DPOTrainer):
        """TRL's DPO on rows we tokenised ourselves. TRL 1.16 would re-tokenise any dataset it is given (and
        run extract_prompt on one without a prompt column), so its preparation step is skipped. Its batches
        are [chosen rows; rejected rows]: with `sharing`, row i and row i + B run their common prompt once."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

        def _pairs_shared(self, inputs):
            half = len(inputs["input_ids"]) // 2
            return sharing.over([[i, half + i] for i in range(half)]) if sharing else contextlib.nullcontext()

        def _compute_loss(self, model, inputs, return_outputs):
            with self._pairs_shared(inputs):
                out = super()._compute_loss(model, inputs, return_outputs)
            if not self.model.training:  # TRL's own test for its eval metrics
                self._sum_eval_pairs(len(inputs["input_ids"]) // 2 * self.accelerator.num_processes)
            return out

        def _sum_eval_pairs(self, pairs: int) -> None:
            """TRL reports the mean of per-batch means, so a short last batch weighs more than its pairs do:
            accumulate per pair (the held-out accuracy is a number we compare to 0.01)."""
            metrics = self._metrics["eval"]
            self.eval_sums["pairs"] += pairs
            self.eval_sums["correct"] += metrics["rewards/accuracies"][-1] * pairs
            self.eval_sums["margin"] += metrics["rewards/margins"][-1] * pairs

        def evaluate(self, *args, **kwargs):
            self.eval_sums = collections.Counter()
            return super().evaluate(*args, **kwargs)

        def compute_ref_log_probs(self, model, inputs):
            with self._pairs_shared(inputs):
                return super().compute_ref_log_probs(model, inputs)

    model = models.prepare(cfg, "causal", lineage, tokenizer)
    if cfg.full:
        model.requires_grad_(True)  # merging a lineage (peft, inference mode) leaves the weights frozen
    ref_model = copy.deepcopy(model).eval() if cfg.full and not cfg.precompute_ref_log_probs else None
    sharing = PrefixSharing(*[m for m in (model, ref_model) if m is not None]) if cfg.prefix_sharing else None
    args = train.trainer_args(cfg, out, TRLDPOConfig, tokens_per_example=2 * cfg.max_length,
                              max_tokens=train.micro_batch_tokens(cfg, model, lm_head=True), **options)
    trainer = PreTokenizedDPOTrainer(model=model, ref_model=ref_model, args=args, processing_class=tokenizer,
                                     train_dataset=Dataset.from_list(train_set),
                                     eval_dataset=Dataset.from_list(eval_set) if eval_set else None)
    # TRL copies an existing adapter of a PeftModel into a frozen "ref" adapter. Ours is fresh, so that copy
    # equals adapters-off; drop it, and TRL takes the reference with the adapter disabled: the merged SFT
    # model, with no second adapter to run, hold or checkpoint.
    if "ref" in getattr(trainer.model, "peft_config", {}):
        trainer.model.delete_adapter("ref")
    train.use_our_callbacks(trainer, out)
    return trainer


@contextlib.contextmanager
def completion_positions_only():
    """TRL 1.16's fused LM head projects every position of a DPO batch through the vocabulary off CUDA/XPU
    (fixed tile shapes for compilers such as Neuron's), prompts and padding included, though only completion
    positions count. Here it scores those alone, as TRL does on CUDA: each position's arithmetic is the same."""
    import trl.trainer.utils as trl_utils

    original = trl_utils._use_triton  # on CUDA/XPU: the compact (masked) path, and TRL's Triton kernel
    trl_utils._use_triton = lambda device: device.type == "cpu" or original(device)
    try:
        yield
    finally:
        trl_utils._use_triton = original


def train_and_evaluate(trainer, out: Run, cfg: DPOConfig, evaluates: bool) -> dict[str, Any]:
    """Evaluate before training (policy == reference: implicit rewards 0, sigmoid loss ln 2; kept in the
    manifest for a resumed run), train, evaluate after."""
    before = out.manifest.get("eval_before", {})
    if evaluates and not before:
        before = {f"before_{k}": v for k, v in trainer.evaluate().items() if k.startswith("eval_")}
        out.write(eval_before=before)
    train_out = train.fit(trainer, out, cfg.resume)
    metrics = {**train.standard_metrics(trainer, train_out), **before}
    if evaluates:
        after = train.evaluate_at_end(trainer)  # eval_sums are this evaluation's
        sums = trainer.eval_sums
        metrics.update(after, eval_pairs=int(sums["pairs"]), eval_implicit_accuracy=sums["correct"] / sums["pairs"],
                       eval_implicit_margin=sums["margin"] / sums["pairs"])
    return metrics


def run(cfg: DPOConfig) -> dict[str, Any]:
    """Check every input, then set up, train, evaluate and save (then judge the saved policy, if asked)."""
    options, train_rows, eval_rows, lineage, tokenizer, train_set, eval_set, counts, eval_counts = load_inputs(cfg)
    with Run.open(cfg.output, "dpo", cfg.overwrite, cfg.resume) as out:
        out.start(to_dict(cfg), lineage=lineage, data={"train": train_rows.files, "eval": eval_rows.files if eval_rows else [],
                                      "counts": {"train": {**counts, **train_rows.skipped}, "eval": eval_counts}})
        trainer = build_trainer(cfg, out, lineage, tokenizer, options, train_set, eval_set)
        with completion_positions_only():
            metrics = train_and_evaluate(trainer, out, cfg, bool(eval_set))
        train.save_model(trainer.model, tokenizer, out, cfg.full)
        out.write(**train.model_fields(cfg, tokenizer, lineage, "causal"))
        out.finish(metrics)
        if cfg.judge:  # on the saved run, after it is complete: a judging failure loses no training
            metrics.update(judge_policy(cfg, out, eval_rows))
            out.write(metrics=metrics)
    print(train.summarise(out, metrics), flush=True)
    if "before_eval_logps/chosen" in metrics:
        print("[align] eval log-probs: chosen {:.2f} -> {:.2f}, rejected {:.2f} -> {:.2f}".format(
            *(metrics[f"{w}eval_logps/{s}"] for s in ("chosen", "rejected") for w in ("before_", ""))), flush=True)
    if cfg.judge:
        print(f"[align] judge {cfg.judge}: reward {metrics['judge_reward']:.3f} vs SFT reference "
              f"{metrics['judge_reference_reward']:.3f}, win rate {metrics['judge_win_rate']:.2f}", flush=True)
    return out.manifest
