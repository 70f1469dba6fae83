"""RLHF with PPO (InstructGPT step 3): optimise the SFT policy against a reward, KL-penalised to the SFT model.

Every role lives on one base model (actor_critic.py). One iteration (`PPOTrainer.train_step`):
    make_experience  rollout: sample responses to a batch of prompts (KV-cached, batched, stop at end-of-turn);
                     score them (normalised), old/reference log-probs and values; per-token KL-shaped rewards;
                     GAE advantages, returns = advantages + values
    ppo_update       ppo_epochs x minibatches: clipped policy loss (+ entropy bonus), clipped value loss
The math lives in ppo_math.py (pure, tested against hand-computed values); the divergence rules in guard.py.
"""

from __future__ import annotations

import importlib
import math
import os
import random
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

from align import attention, chat, data, guard, infer, models, ppo_math, reward_model, runs, train
from align.actor_critic import POLICY, ActorCritic
from align.config import PPOConfig, to_dict
from align.errors import ConfigError, RunError
from align.runs import Run

SNAPSHOTS = "snapshots"  # snapshots/step-N/adapter_model.safetensors: the policy adapter after N iterations
Scorer = Callable[[list[list[dict]], list[str]], torch.Tensor]


# --- rewards --------------------------------------------------------------------------------------------

def function_reward(spec: str) -> Scorer:
    """'module:function' -> scorer. Imported only because the user named it; the working dir is importable."""
    module_name, _, fn_name = spec.partition(":")
    if not fn_name:
        raise ConfigError(f"--reward {spec!r}: expected a run directory or 'module:function'")
    sys.path.insert(0, os.getcwd())
    try:
        fn = getattr(importlib.import_module(module_name), fn_name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"--reward {spec!r}: cannot import it ({e})") from None
    finally:
        sys.path.remove(os.getcwd())

    def score(prompts: list[list[dict]], responses: list[str]) -> torch.Tensor:
        values = fn([p[-1]["content"] for p in prompts], responses)
        if len(values) != len(responses):
            raise RunError(f"reward function {spec} returned {len(values)} values for {len(responses)} responses")
        return torch.tensor([float(v) for v in values])

    return score


def reward_run(cfg: PPOConfig, tokenizer) -> tuple[Path | None, dict[str, Any] | None]:
    """The --reward run directory and manifest (None for a function), checked before anything is written."""
    if not (cfg.reward and (Path(cfg.reward) / runs.MANIFEST).exists()):
        return None, None
    return Path(cfg.reward), reward_model.require_rm_run(cfg.reward, tokenizer, f"--reward {cfg.reward}")


def build(cfg: PPOConfig, lineage: dict[str, Any], tokenizer, reward: tuple[Path | None, dict | None] | None = None
          ) -> tuple[ActorCritic, Scorer, dict | None, dict]:
    """The ActorCritic and the scorer: the RM as an adapter on the policy's base when it was trained on the
    same lineage, else the RM loaded on its own, or the named function. -> (ac, scorer, reward norm, info)
    `reward`: reward_run's answer when the caller has it (the RM's manifest read and checked once)."""
    reward_dir, rm_manifest = reward or reward_run(cfg, tokenizer)
    same = ("base", "adapters")
    shares_base = bool(rm_manifest) and not rm_manifest.get("full") and \
        {k: rm_manifest["lineage"][k] for k in same} == {k: lineage[k] for k in same}
    if rm_manifest and not shares_base:
        print("[align] the reward model was trained on another base lineage: loading it as a separate model; "
              "the value model starts from a fresh adapter", flush=True)
    ac = ActorCritic.build(cfg, lineage, tokenizer, reward_dir / "adapter" if shares_base else None)
    info = {"reward_shares_base": shares_base, "reward": cfg.reward}
    if shares_base:
        def shared(prompts: list[list[dict]], responses: list[str]) -> torch.Tensor:  # tokenised as in RM training
            return ac.rewards(reward_model.encode_for_scoring(tokenizer, prompts, responses, rm_manifest))

        return ac, shared, rm_manifest.get("reward_norm"), info
    if rm_manifest:
        separate = reward_model.load_reward_model(str(reward_dir), dtype=cfg.dtype)
        return ac, lambda p, r: torch.tensor(separate.score(p, r)), rm_manifest.get("reward_norm"), info
    return ac, function_reward(cfg.reward), None, info


# --- rollouts -------------------------------------------------------------------------------------------

@dataclass
class Rollout:
    batch: dict[str, Any]  # input_ids, attention_mask, position_ids (prompt left-padded + response), start
    mask: torch.Tensor  # (B, R) 1 on response tokens up to and including end-of-turn
    prompts: list[list[dict]]
    responses: list[str]
    stopped: torch.Tensor  # (B,) bool: emitted end-of-turn


def rollout(ac: ActorCritic, tokenizer, prompts: list[list[dict]], cfg: PPOConfig, adapter: str | None = POLICY,
            greedy: bool = False) -> Rollout:
    enc = {k: t.to(ac.device) for k, t in infer.encode_prompts(tokenizer, prompts, cfg.max_prompt_length).items()}
    stop = chat.stop_token_ids(tokenizer)
    out = ac.generate(enc, adapter, max_new_tokens=cfg.max_new_tokens,
                      **infer.sampling_kwargs(0.0 if greedy else cfg.temperature, cfg.top_p, cfg.top_k, stop=stop,
                                              pad_id=tokenizer.pad_token_id))
    start = enc["input_ids"].shape[1]
    response = out[:, start:]
    is_stop = torch.isin(response, torch.tensor(stop, device=response.device))
    # keep tokens up to and including the first stop token; everything after is padding
    after_stop = (is_stop.cumsum(-1) - is_stop.long()) > 0
    mask = (~after_stop).long()
    response = response.masked_fill(after_stop, tokenizer.pad_token_id)
    attention = torch.cat([enc["attention_mask"], mask], dim=1)
    batch = {"input_ids": torch.cat([enc["input_ids"], response], dim=1), "attention_mask": attention,
             "position_ids": (attention.cumsum(-1) - 1).clamp(min=0), "start": start}
    texts = [tokenizer.decode(r[m.bool()], skip_special_tokens=True).strip() for r, m in zip(response, mask)]
    return Rollout(batch, mask.float(), prompts, texts, is_stop.any(-1).cpu())


def rows(batch: dict[str, Any], mask: torch.Tensor, idx) -> tuple[dict[str, Any], int]:
    """Rows `idx` of a rollout batch without the columns that are padding in all of them (the prompts' common
    left padding, the answer columns past their longest answer): in bench/cpu.py's rollouts 7% of an update's
    tokens. -> (batch, answer columns kept)."""
    real = batch["attention_mask"][idx]
    lead = int((real.cumsum(-1) == 0).sum(-1).min())
    answer = max(1, int(mask[idx].sum(-1).max()))
    cut = {k: batch[k][idx][:, lead: batch["start"] + answer] for k in ("input_ids", "attention_mask", "position_ids")}
    return {**cut, "start": batch["start"] - lead}, answer


def shape_scores(raw: torch.Tensor, stopped: torch.Tensor, cfg: PPOConfig, norm: dict[str, float] | None) -> torch.Tensor:
    """Penalty for never stopping, RM normalisation, optional whitening and clipping."""
    shaped = raw - cfg.missing_eos_penalty * (~stopped).float()
    if cfg.normalize_reward and norm:
        shaped = (shaped - norm["mean"]) / max(norm["std"], 1e-6)
    if cfg.whiten_rewards and len(shaped) > 1:
        shaped = (shaped - shaped.mean()) / (shaped.std() + 1e-8)
    if cfg.reward_clip > 0:
        shaped = shaped.clamp(-cfg.reward_clip, cfg.reward_clip)
    return shaped


# --- several processes -----------------------------------------------------------------------------------

def world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed() -> None:
    """Under torchrun/accelerate (WORLD_SIZE > 1): each rank rolls out its own prompts, gradients are averaged."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and dist.is_available() and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def prompt_batches(n_prompts: int, batch: int, seed: int, rank: int, size: int):
    """Deterministic stream of prompt indices: a fresh permutation per pass, sharded by rank.

    Iteration k always gets the same prompts, so resuming at iteration k continues the stream exactly.
    """
    def at(step: int) -> list[int]:
        per_pass = max(1, n_prompts // (batch * size))
        epoch, offset = divmod(step, per_pass)
        perm = random.Random(seed + epoch).sample(range(n_prompts), n_prompts)
        chunk = perm[offset * batch * size: (offset + 1) * batch * size]
        return chunk[rank::size] or chunk[:1]

    return at


# --- the trainer ----------------------------------------------------------------------------------------

@dataclass
class Experience:
    rollout: Rollout
    raw: torch.Tensor  # (B,) reward as scored
    score: torch.Tensor  # (B,) shaped
    logprobs: torch.Tensor  # (B, R) policy at rollout time ("old")
    values: torch.Tensor  # (B, R)
    kl: torch.Tensor  # (B, R) per-token KL to the reference
    advantages: torch.Tensor
    returns: torch.Tensor


class PPOTrainer:
    """setup (__init__) -> fit (train_step per iteration: make_experience, ppo_update) -> save."""

    def __init__(self, cfg: PPOConfig, lineage: dict[str, Any], tokenizer, prompts: list, eval_prompts: list,
                 out: Run, reward: tuple[Path | None, dict | None] | None = None):
        from transformers import get_scheduler

        self.cfg, self.tokenizer, self.out = cfg, tokenizer, out
        self.prompts, self.eval_prompts = prompts, eval_prompts
        self.rank, self.size = world()
        self.ac, self.scorer, self.norm, self.reward_info = build(cfg, lineage, tokenizer, reward)
        self.kl_ctl = (ppo_math.AdaptiveKLController(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon) if cfg.adaptive_kl
                       else ppo_math.FixedKLController(cfg.kl_coef))
        self.opt = torch.optim.AdamW([{"params": self.ac.policy_params, "lr": cfg.learning_rate},
                                      {"params": self.ac.value_params, "lr": cfg.value_learning_rate}],
                                     weight_decay=0.0)
        updates = cfg.steps * cfg.ppo_epochs * math.ceil(cfg.rollout_batch_size / cfg.mini_batch_size)
        self.sched = get_scheduler(cfg.lr_scheduler, self.opt, num_warmup_steps=0, num_training_steps=updates)
        self.next_prompts = prompt_batches(len(prompts), cfg.rollout_batch_size, cfg.seed, self.rank, self.size)
        self.log = train.LogFile(out.path / "logs.jsonl") if self.rank == 0 else None
        self.history: list[dict[str, float]] = []
        torch.manual_seed(cfg.seed + self.rank)
        random.seed(cfg.seed)

    def fit(self) -> dict[str, Any]:
        """Resume, evaluate the reference, run the iterations, evaluate the policy."""
        from tqdm.auto import tqdm

        start, before = self.resume()
        if self.eval_prompts and before is None:
            before = self.evaluate(adapter=None)
            print(f"[align] before PPO: eval reward {before['reward']:.3f}", flush=True)
        bar = tqdm(range(start + 1, self.cfg.steps + 1), initial=start, total=self.cfg.steps, desc="ppo",
                   disable=self.rank != 0)
        for step in bar:
            metrics = self.train_step(step)
            bar.set_postfix({"reward": f"{metrics['reward/raw']:.3f}", "kl": f"{metrics['kl']:.3f}",
                             "len": f"{metrics['response_length']:.0f}"})
            if self.rank == 0:
                self.save(step, before)
        after = self.evaluate(adapter=POLICY) if self.eval_prompts else None
        return self.summary(before, after)

    def train_step(self, step: int) -> dict[str, float]:
        t0 = time.perf_counter()
        ro = rollout(self.ac, self.tokenizer, [self.prompts[i] for i in self.next_prompts(step - 1)], self.cfg)
        t1 = time.perf_counter()
        with attention.pinned(ro.batch["input_ids"].shape[1]):  # micro-batches: the whole batch's kernel
            exp = self.make_experience(ro, step)
            t2 = time.perf_counter()
            stats = self.ppo_update(exp)
        guard.check_update(step, self.cfg, stats)
        t3 = time.perf_counter()
        seq_kl, mask = float(exp.kl.sum(-1).mean()), ro.mask
        metrics = {
            "reward/raw": float(exp.raw.mean()), "reward/normalized": float(exp.score.mean()),
            "kl": seq_kl, "kl_coef": self.kl_ctl.value, "stop_rate": float(ro.stopped.float().mean()),
            "response_length": float(mask.sum(-1).mean()),
            "explained_variance": float(ppo_math.explained_variance(exp.values, exp.returns, mask)),
            **stats, "time/generate": t1 - t0, "time/experience": t2 - t1, "time/update": t3 - t2,
            "rollout_tokens_per_s": float(mask.sum()) / (t1 - t0),
            "update_tokens_per_s": float(ro.batch["attention_mask"].sum()) * self.cfg.ppo_epochs / (t3 - t2)}
        self.kl_ctl.update(seq_kl, len(ro.responses) * self.size)
        self.history.append(metrics)
        if self.log:
            self.log.write(step, metrics)
            if self.cfg.sample_steps and step % self.cfg.sample_steps == 0:
                self.write_samples(step, exp)
        return metrics

    def save(self, step: int, before: dict | None) -> None:
        """A resume checkpoint every save_steps, a kept policy snapshot every snapshot_steps."""
        cfg = self.cfg
        if cfg.save_steps and step % cfg.save_steps == 0 and step < cfg.steps:
            self.ac.save_state(self.out.checkpoints / f"step-{step}", self.opt, self.sched, self.kl_ctl, step,
                               {"eval_before": before})
        if cfg.snapshot_steps and step % cfg.snapshot_steps == 0 and step < cfg.steps:
            self.ac.model.save_pretrained(str(self.out.path / SNAPSHOTS / f"step-{step}"), selected_adapters=[POLICY])

    @torch.no_grad()
    def make_experience(self, ro: Rollout, step: int) -> Experience:
        """Score, old and reference log-probs, values (one forward per role), KL-shaped rewards, GAE."""
        cfg, mask = self.cfg, ro.mask
        raw = self.scorer(ro.prompts, ro.responses).float()
        score = shape_scores(raw, ro.stopped, cfg, self.norm)
        logprobs, _, values = self.ac.act(ro.batch, cfg.temperature)
        ref_logprobs = self.ac.logprobs(ro.batch, None, cfg.temperature)
        values = values * mask
        kl = ppo_math.kl_penalty(logprobs, ref_logprobs, cfg.kl_estimator) * mask
        rewards = ppo_math.token_rewards(score.to(kl.device), kl, self.kl_ctl.value, mask)
        advantages, returns = ppo_math.gae(rewards, values, mask, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            advantages = ppo_math.masked_whiten(advantages, mask)
        guard.check_rollout(step, cfg, mask, kl, score=score, logprobs=logprobs, values=values,
                            advantages=advantages, returns=returns)
        return Experience(ro, raw, score, logprobs, values, kl, advantages, returns)

    def ppo_update(self, exp: Experience) -> dict[str, float]:
        """ppo_epochs passes of clipped policy + value updates over minibatches; early stop on approx KL."""
        cfg, n = self.cfg, exp.rollout.mask.shape[0]
        stats: dict[str, list[float]] = {}
        for epoch in range(cfg.ppo_epochs):
            epoch_kl = []
            for mb in torch.randperm(n).split(cfg.mini_batch_size):
                self.opt.zero_grad(set_to_none=True)
                for micro in mb.split(cfg.micro_batch_size):
                    for key, value in self.micro_step(exp, micro, len(micro) / len(mb)).items():
                        stats.setdefault(key, []).append(value)
                    epoch_kl.append(stats["approx_kl"][-1])
                stats.setdefault("grad_norm", []).append(self.optimizer_step())
            if cfg.target_approx_kl and sum(epoch_kl) / len(epoch_kl) > cfg.target_approx_kl:
                stats["early_stop_epoch"] = [epoch + 1]
                break
        return {k: sum(v) / len(v) for k, v in stats.items()}

    def micro_step(self, exp: Experience, micro: torch.Tensor, weight: float) -> dict[str, float]:
        """Forward/backward of policy and value on some rows; gradients scaled by their share of the minibatch."""
        cfg = self.cfg
        b, r = rows(exp.rollout.batch, exp.rollout.mask, micro)
        mask, old_logprobs = exp.rollout.mask[micro, :r], exp.logprobs[micro, :r]
        logprobs, entropy, values = self.ac.act(b, cfg.temperature, entropy=cfg.entropy_coef > 0)
        pg_loss, pg = ppo_math.policy_loss(logprobs, old_logprobs, exp.advantages[micro, :r], mask, cfg.clip_range)
        entropy = ppo_math.masked_mean(entropy, mask)
        vf_loss, vf = ppo_math.value_loss(values, exp.values[micro, :r], exp.returns[micro, :r], mask,
                                          cfg.clip_range_value)
        ((pg_loss - cfg.entropy_coef * entropy + cfg.vf_coef * vf_loss) * weight).backward()
        return {k: float(v.detach()) for k, v in {"policy_loss": pg_loss, "value_loss": vf_loss, "entropy": entropy,
                                                  **pg, **vf}.items()}

    def optimizer_step(self) -> float:
        if self.size > 1:
            for p in self.ac.trainable:
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= self.size
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.ac.trainable, self.cfg.max_grad_norm))
        self.opt.step()
        self.sched.step()
        return grad_norm

    # --- evaluation, resume, results ---------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, adapter: str | None) -> dict[str, Any]:
        """Greedy responses to the held-out prompts and their mean raw reward (adapter None: the SFT reference).
        Prompts are batched by length, so little is spent on padding."""
        order = sorted(range(len(self.eval_prompts)),
                       key=lambda i: len(chat.prompt_text(self.tokenizer, self.eval_prompts[i])))
        responses, rewards, lengths = {}, {}, {}
        for i in range(0, len(order), self.cfg.rollout_batch_size):
            idx = order[i: i + self.cfg.rollout_batch_size]
            ro = rollout(self.ac, self.tokenizer, [self.eval_prompts[j] for j in idx], self.cfg, adapter, greedy=True)
            scores = self.scorer(ro.prompts, ro.responses).tolist()
            for j, r, s, n in zip(idx, ro.responses, scores, ro.mask.sum(-1).tolist()):
                responses[j], rewards[j], lengths[j] = r, s, n
        first = range(min(4, len(self.eval_prompts)))
        return {"reward": sum(rewards.values()) / len(rewards),
                "response_length": sum(lengths.values()) / len(lengths),
                "samples": [{"prompt": self.eval_prompts[j][-1]["content"], "response": responses[j],
                             "reward": rewards[j]} for j in first]}

    def resume(self) -> tuple[int, dict | None]:
        """(iterations already done, the reference's eval) from the last checkpoint when resuming."""
        ckpt = latest_state(self.out) if self.cfg.resume else None
        if not ckpt:
            return 0, None
        meta = self.ac.load_state(ckpt, self.opt, self.sched, self.kl_ctl)
        train.drop_logs_after(self.out.path / "logs.jsonl", meta["step"])
        print(f"[align] resuming from {ckpt} (iteration {meta['step']})", flush=True)
        return meta["step"], meta.get("eval_before")

    def write_samples(self, step: int, exp: Experience) -> None:
        lines = [{"step": step, "prompt": p[-1]["content"], "response": r, "reward": s}
                 for p, r, s in list(zip(exp.rollout.prompts, exp.rollout.responses, exp.raw.tolist()))[:3]]
        train.append_jsonl(self.out.path / "samples.jsonl", lines)
        for x in lines:
            print(f"  [{step}] {x['prompt'][:60]!r} -> {x['response'][:80]!r} (reward {x['reward']:.3f})", flush=True)

    def summary(self, before: dict | None, after: dict | None) -> dict[str, Any]:
        h = self.history
        return {"steps": self.cfg.steps, **self.reward_info,
                "reward_start": h[0]["reward/raw"] if h else None, "reward_end": h[-1]["reward/raw"] if h else None,
                "kl_end": h[-1]["kl"] if h else None,
                "eval_reward_before": before and before["reward"], "eval_reward_after": after and after["reward"],
                "eval_samples_before": before and before["samples"], "eval_samples_after": after and after["samples"]}


def latest_state(run: Run) -> Path | None:
    done = [p for p in run.checkpoints.glob("step-*") if (p / "state.json").exists()]
    return max(done, key=lambda p: int(p.name.split("-")[1])) if done else None


def run(cfg: PPOConfig) -> dict[str, Any]:
    """Check every input, then set up, train and save."""
    if not cfg.reward:  # --full and the batch sizes are checked by PPOConfig
        raise ConfigError("no reward: pass --reward RM_RUN_DIR or --reward module:function")
    cfg = replace(cfg, lora_dropout=0.0)  # PPO's ratio must be 1 at the start of each update
    loaded = data.load_prompts(cfg.prompts, cfg.comparison_prompts)
    prompts = [v["prompt"] for v in loaded.values()]
    loaded_eval = data.load_prompts(cfg.eval_prompts, cfg.comparison_prompts) if cfg.eval_prompts else None
    eval_prompts = [v["prompt"] for v in loaded_eval.values()] if loaded_eval else []
    lineage, tokenizer = models.tokenizer_for(cfg)
    counts = {"truncated_prompts": chat.count_long_prompts(tokenizer, prompts, cfg.max_prompt_length)}
    print(f"[align] {len(prompts)} prompts; over max_prompt_length (their last tokens kept): "
          f"{counts['truncated_prompts']}", flush=True)
    reward_dir, rm_manifest = reward_run(cfg, tokenizer)
    if reward_dir is None:  # a wrong --reward is refused before the run directory exists
        function_reward(cfg.reward)
    init_distributed()
    rank, size = world()
    if cfg.rollout_batch_size * size > len(prompts):
        raise ConfigError(f"rollout_batch_size x processes ({cfg.rollout_batch_size * size}) exceeds the "
                          f"{len(prompts)} prompts")

    with Run.open(cfg.output, "ppo", cfg.overwrite, cfg.resume) as out:
        out.start(to_dict(cfg), lineage=lineage, data={"prompts": loaded.files, "counts": counts,
                                                       "eval_prompts": loaded_eval.files if loaded_eval else []},
                  **({"reward_model": runs.model_record(reward_dir, rm_manifest)} if reward_dir else {}))
        trainer = PPOTrainer(cfg, lineage, tokenizer, prompts, eval_prompts, out, (reward_dir, rm_manifest))
        metrics = trainer.fit()
        if rank == 0:
            trainer.ac.save(out, tokenizer)
        out.write(**train.model_fields(cfg, tokenizer, lineage, "causal"))
        out.finish(metrics)
    if rank == 0:
        ev = (f" | eval reward {metrics['eval_reward_before']:.3f} -> {metrics['eval_reward_after']:.3f}"
              if metrics["eval_reward_after"] is not None else "")
        print(f"ppo done | reward {metrics['reward_start']:.3f} -> {metrics['reward_end']:.3f} | "
              f"kl {metrics['kl_end']:.3f}{ev} | -> {out.path}", flush=True)
    return out.manifest
