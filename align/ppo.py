"""RLHF with PPO (InstructGPT step 3): optimise the SFT policy against a reward, KL-penalised to the SFT model.

Memory design: ONE frozen base model (optionally 4-bit) carries every role as a LoRA adapter:
    policy     adapter "default" (trainable; starts equal to the SFT model: lineage merged, fresh LoRA = 0)
    reference  the same model with adapters disabled (exactly the SFT model, no copy)
    value      adapter "value" + a linear value head (trainable; initialised from the reward model)
    reward     adapter "reward" + the RM's score head (frozen), when the RM was trained on the same base
               lineage as the policy; otherwise the RM is loaded on its own, or a Python function is used.
One iteration, top to bottom:
    rollout   sample responses to a batch of prompts (KV-cached, batched `generate`, stop at end-of-turn)
    score     reward of each response (normalised), minus a per-token KL penalty to the reference
    advantage GAE over response tokens; returns = advantages + values
    update    ppo_epochs x minibatches: clipped policy loss (+ entropy bonus), clipped value loss
The math lives in ppo_math.py (pure, tested against hand-computed values).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

from align import chat, data, guard, models, ppo_math, runs, train
from align.config import PPOConfig, to_dict
from align.errors import ConfigError, RunError
from align.runs import Run

POLICY, VALUE, REWARD = "default", "value", "reward"  # the policy is peft's "default" so adapter/ loads as usual


# --- the model: one base, several adapters --------------------------------------------------------------

class ActorCritic:
    """A PeftModel whose adapters play the PPO roles; forwards return only what PPO needs."""

    def __init__(self, model, value_head: torch.nn.Linear, reward_head: torch.nn.Linear | None = None):
        self.model, self.value_head, self.reward_head = model, value_head, reward_head
        base = model.get_base_model()
        self.backbone = getattr(base, base.base_model_prefix)  # the transformer without the LM head
        self.lm_head = base.get_output_embeddings()
        named = list(model.named_parameters())
        self.policy_params = [p for n, p in named if "lora_" in n and f".{POLICY}." in n]
        self.value_params = [p for n, p in named if "lora_" in n and f".{VALUE}." in n] + list(value_head.parameters())
        self.trainable = self.policy_params + self.value_params

    def use(self, adapter: str) -> None:
        self.model.set_adapter(adapter)
        for p in self.trainable:  # set_adapter freezes the other adapters; both policy and value train
            p.requires_grad_(True)

    def hidden(self, batch: dict[str, torch.Tensor], adapter: str | None) -> torch.Tensor:
        """Last hidden states under an adapter (None: adapters disabled = the reference model)."""
        kwargs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      position_ids=batch["position_ids"], use_cache=False)
        if adapter is None:
            with self.model.disable_adapter():
                return self.backbone(**kwargs).last_hidden_state
        self.use(adapter)
        return self.backbone(**kwargs).last_hidden_state

    def response_logits(self, batch, adapter: str | None, temperature: float) -> torch.Tensor:
        """Logits predicting each response token (the LM head runs on response positions only)."""
        h = self.hidden(batch, adapter)[:, batch["start"] - 1: -1]
        return self.lm_head(h).float() / temperature

    def values(self, batch) -> torch.Tensor:
        h = self.hidden(batch, VALUE)[:, batch["start"] - 1: -1]
        return self.value_head(h.to(self.value_head.weight.dtype)).squeeze(-1).float()


def _adapter_tensors(adapter_dir: Path) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """An RM adapter's LoRA tensors and its score head (saved beside them by peft's modules_to_save)."""
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    lora = {k: v for k, v in tensors.items() if "lora_" in k}
    head = next((v for k, v in tensors.items() if "lora_" not in k and k.endswith(("score.weight", "classifier.weight"))),
                None)
    return lora, head


def _add_adapter_from(model, name: str, adapter_dir: Path, trainable: bool) -> torch.Tensor | None:
    """Load an RM's LoRA onto the causal model under `name`; return its score head weight."""
    from peft import LoraConfig, set_peft_model_state_dict

    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    lora = LoraConfig(r=cfg["r"], lora_alpha=cfg["lora_alpha"], lora_dropout=0.0, bias="none",
                      target_modules=cfg["target_modules"], task_type="CAUSAL_LM")
    model.add_adapter(name, lora)
    tensors, head = _adapter_tensors(adapter_dir)
    result = set_peft_model_state_dict(model, tensors, adapter_name=name)
    missing = [k for k in result.unexpected_keys if "lora_" in k]
    if missing:
        raise RunError(f"{adapter_dir}: adapter weights do not fit the policy model ({missing[:2]} ...)")
    for n, p in model.named_parameters():
        if f".{name}." in n:
            p.requires_grad_(trainable)
    return head


def _linear_head(hidden: int, init: torch.Tensor | None, dtype, device, trainable: bool) -> torch.nn.Linear:
    head = torch.nn.Linear(hidden, 1, bias=False).to(device=device, dtype=torch.float32)
    with torch.no_grad():
        head.weight.copy_(init.float() if init is not None else torch.zeros_like(head.weight))
    head.requires_grad_(trainable)
    return head


# --- rewards --------------------------------------------------------------------------------------------

Scorer = Callable[[list[list[dict]], list[str]], torch.Tensor]


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


def shared_reward(ac: ActorCritic, tokenizer, rm_manifest: dict[str, Any]) -> Scorer:
    """The RM as an adapter on the policy's base, fed text tokenised exactly as in RM training."""
    from align import rm

    def score(prompts: list[list[dict]], responses: list[str]) -> torch.Tensor:
        batch = rm.encode_for_scoring(tokenizer, prompts, responses, rm_manifest)
        device = ac.lm_head.weight.device
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            h = ac.hidden({"input_ids": ids, "attention_mask": mask, "position_ids": pos}, REWARD)
            last = h[torch.arange(len(ids), device=device), batch["last_index"].to(device)]
            return ac.reward_head(last.float()).squeeze(-1).float().cpu()

    return score


# --- rollouts -------------------------------------------------------------------------------------------

@dataclass
class Rollout:
    batch: dict[str, Any]  # input_ids, attention_mask, position_ids (prompt left-padded + response), start
    mask: torch.Tensor  # (B, R) 1 on response tokens up to and including end-of-turn
    prompts: list[list[dict]]
    responses: list[str]
    stopped: torch.Tensor  # (B,) bool: emitted end-of-turn


def encode_prompts(tokenizer, prompts: list[list[dict]], max_len: int, device) -> dict[str, torch.Tensor]:
    """Left-padded prompt ids (left-truncated to max_len, keeping the generation prompt)."""
    rows = [chat.encode_text(tokenizer, chat.prompt_text(tokenizer, p), None, None, False).input_ids[-max_len:]
            for p in prompts]
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    return {"input_ids": ids, "attention_mask": mask}


@torch.no_grad()
def rollout(ac: ActorCritic, tokenizer, prompts: list[list[dict]], cfg: PPOConfig, adapter: str | None = POLICY,
            greedy: bool = False) -> Rollout:
    enc = encode_prompts(tokenizer, prompts, cfg.max_prompt_length, ac.lm_head.weight.device)
    stop = chat.stop_token_ids(tokenizer)
    sample = not greedy
    gen_kwargs = dict(max_new_tokens=cfg.max_new_tokens, do_sample=sample, eos_token_id=stop,
                      pad_token_id=tokenizer.pad_token_id, temperature=cfg.temperature if sample else None,
                      top_p=cfg.top_p if sample else None, top_k=cfg.top_k if sample else None)
    if adapter is None:
        with ac.model.disable_adapter():
            out = ac.model.generate(**enc, **gen_kwargs)
    else:
        ac.use(adapter)
        out = ac.model.generate(**enc, **gen_kwargs)
    start = enc["input_ids"].shape[1]
    response = out[:, start:]
    is_stop = torch.isin(response, torch.tensor(stop, device=response.device))
    stopped = is_stop.any(-1)
    # keep tokens up to and including the first stop token; everything after is padding
    after_stop = (is_stop.cumsum(-1) - is_stop.long()) > 0
    mask = (~after_stop).long()
    response = response.masked_fill(after_stop, tokenizer.pad_token_id)
    attention = torch.cat([enc["attention_mask"], mask], dim=1)
    batch = {"input_ids": torch.cat([enc["input_ids"], response], dim=1), "attention_mask": attention,
             "position_ids": (attention.cumsum(-1) - 1).clamp(min=0), "start": start}
    texts = [tokenizer.decode(r[m.bool()], skip_special_tokens=True).strip() for r, m in zip(response, mask)]
    return Rollout(batch, mask.float(), prompts, texts, stopped.cpu())


def _rows(batch: dict[str, Any], idx) -> dict[str, Any]:
    return {k: (v[idx] if torch.is_tensor(v) else v) for k, v in batch.items()}


@torch.no_grad()
def score_rollout(ro: Rollout, scorer: Scorer, cfg: PPOConfig, norm: dict[str, float] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(raw score, shaped score): penalty for never stopping, RM normalisation, optional whitening/clipping."""
    raw = scorer(ro.prompts, ro.responses).float()
    shaped = raw - cfg.missing_eos_penalty * (~ro.stopped).float()
    if cfg.normalize_reward and norm:
        shaped = (shaped - norm["mean"]) / max(norm["std"], 1e-6)
    if cfg.whiten_rewards and len(shaped) > 1:
        shaped = (shaped - shaped.mean()) / (shaped.std() + 1e-8)
    if cfg.reward_clip > 0:
        shaped = shaped.clamp(-cfg.reward_clip, cfg.reward_clip)
    return raw, shaped


# --- the loop ---------------------------------------------------------------------------------------------

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


def ppo_update(ac: ActorCritic, ro: Rollout, old: dict[str, torch.Tensor], opt, sched, cfg: PPOConfig) -> dict[str, float]:
    """ppo_epochs passes of clipped policy + value updates over minibatches; early stop on approx KL."""
    n = ro.mask.shape[0]
    stats: dict[str, list[float]] = {}
    _, size = world()
    for epoch in range(cfg.ppo_epochs):
        epoch_kl = []
        for mb in torch.randperm(n).split(cfg.mini_batch_size):
            opt.zero_grad(set_to_none=True)
            for micro in mb.split(cfg.micro_batch_size):
                b, mask = _rows(ro.batch, micro), ro.mask[micro]
                weight = len(micro) / len(mb)
                logits = ac.response_logits(b, POLICY, cfg.temperature)
                logprobs = ppo_math.logprobs_from_logits(logits, b["input_ids"][:, b["start"]:])
                pg_loss, pg = ppo_math.policy_loss(logprobs, old["logprobs"][micro], old["advantages"][micro], mask,
                                                   cfg.clip_range)
                entropy = ppo_math.masked_mean(ppo_math.entropy_from_logits(logits), mask)
                ((pg_loss - cfg.entropy_coef * entropy) * weight).backward()
                values = ac.values(b)
                vf_loss, vf = ppo_math.value_loss(values, old["values"][micro], old["returns"][micro], mask,
                                                  cfg.clip_range_value)
                (cfg.vf_coef * vf_loss * weight).backward()
                for key, value in {"policy_loss": pg_loss, "value_loss": vf_loss, "entropy": entropy, **pg, **vf}.items():
                    stats.setdefault(key, []).append(float(value.detach()))
                epoch_kl.append(float(pg["approx_kl"]))
            if size > 1:
                for p in ac.trainable:
                    if p.grad is not None:
                        dist.all_reduce(p.grad)
                        p.grad /= size
            grad_norm = torch.nn.utils.clip_grad_norm_(ac.trainable, cfg.max_grad_norm)
            stats.setdefault("grad_norm", []).append(float(grad_norm))
            opt.step()
            sched.step()
        if cfg.target_approx_kl and sum(epoch_kl) / len(epoch_kl) > cfg.target_approx_kl:
            stats["early_stop_epoch"] = [epoch + 1]
            break
    return {k: sum(v) / len(v) for k, v in stats.items()}


def reward_run(cfg: PPOConfig, tokenizer) -> tuple[Path | None, dict[str, Any] | None]:
    """The --reward run directory and manifest (None for a function), checked before anything is written."""
    reward_dir = Path(cfg.reward) if cfg.reward and (Path(cfg.reward) / runs.MANIFEST).exists() else None
    if reward_dir is None:
        return None, None
    rm_manifest = runs.read_manifest(reward_dir, require_complete=True)
    if rm_manifest.get("stage") != "rm":
        raise RunError(f"--reward {cfg.reward}: a {rm_manifest.get('stage')} run, not a reward model")
    runs.check_same_template(rm_manifest, {"tokenizer_hash": chat.tokenizer_hash(tokenizer),
                                           "template_hash": chat.template_hash(tokenizer)}, "--reward")
    return reward_dir, rm_manifest


def build(cfg: PPOConfig, lineage: dict[str, Any], tokenizer):
    """The ActorCritic (policy, value, maybe reward on one base) and the scorer."""
    reward_dir, rm_manifest = reward_run(cfg, tokenizer)
    model = models.prepare(cfg, "causal", lineage, tokenizer)  # fresh policy LoRA ("default") on merged lineage
    hidden = model.get_base_model().config.hidden_size
    device, dtype = model.get_base_model().get_output_embeddings().weight.device, models.compute_dtype(cfg.dtype)
    shares_base = bool(rm_manifest) and not rm_manifest.get("full") and \
        {k: rm_manifest["lineage"][k] for k in ("base", "adapters")} == {k: lineage[k] for k in ("base", "adapters")}
    if rm_manifest and not shares_base:
        print("[align] the reward model was trained on another base lineage: loading it as a separate model; "
              "the value model starts from a fresh adapter", flush=True)
    value_init = None
    if shares_base:
        rm_adapter = reward_dir / "adapter"
        value_init = _add_adapter_from(model, VALUE, rm_adapter, trainable=True)
        reward_init = _add_adapter_from(model, REWARD, rm_adapter, trainable=False)
        reward_head = _linear_head(hidden, reward_init, dtype, device, trainable=False)
    else:
        from peft import LoraConfig

        model.add_adapter(VALUE, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, bias="none",
                                            target_modules=models.lora_config(cfg, "CAUSAL_LM").target_modules,
                                            task_type="CAUSAL_LM"))
        reward_head = None
    ac = ActorCritic(model, _linear_head(hidden, value_init, dtype, device, trainable=True), reward_head)
    if cfg.gradient_checkpointing:
        model.get_base_model().gradient_checkpointing_enable({"use_reentrant": False})
    model.eval()  # no dropout: the ratio old/new must be exactly 1 before the first update
    if shares_base:
        scorer, norm = shared_reward(ac, tokenizer, rm_manifest), rm_manifest.get("reward_norm")
    elif rm_manifest:
        from align import rm

        separate = rm.load_reward_model(str(reward_dir), dtype=cfg.dtype)
        scorer = lambda p, r: torch.tensor(separate.score(p, r))  # noqa: E731
        norm = rm_manifest.get("reward_norm")
    else:
        scorer, norm = function_reward(cfg.reward), None
    return ac, scorer, norm, {"reward_shares_base": shares_base, "reward": cfg.reward}


def save_state(path: Path, ac: ActorCritic, opt, sched, kl_ctl, step: int, extra: dict[str, Any]) -> None:
    """A resumable checkpoint, written aside and renamed: trainable weights, optimiser, scheduler, KL, RNG."""
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ids = {id(p) for p in ac.trainable}
    named = {n: p.detach().cpu().contiguous() for n, p in ac.model.named_parameters() if id(p) in ids}
    named["value_head.weight"] = ac.value_head.weight.detach().cpu().contiguous()
    save_file(named, str(tmp / "trainable.safetensors"))
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}, tmp / "state.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "kl_controller": kl_ctl.state_dict(),
                                                "python_rng": random.getstate(), **extra}, default=list))
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def load_state(path: Path, ac: ActorCritic, opt, sched, kl_ctl) -> dict[str, Any]:
    tensors = load_file(str(path / "trainable.safetensors"))
    with torch.no_grad():
        ac.value_head.weight.copy_(tensors.pop("value_head.weight"))
        params = dict(ac.model.named_parameters())
        for name, value in tensors.items():
            params[name].copy_(value)
    state = torch.load(path / "state.pt", weights_only=True)  # our own file; tensors and plain data only
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if torch.cuda.is_available() and state["cuda_rng"]:
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    meta = json.loads((path / "state.json").read_text())
    kl_ctl.load_state_dict(meta["kl_controller"])
    version, internal, gauss = meta["python_rng"]
    random.setstate((version, tuple(internal), gauss))
    return meta


def latest_state(run: Run) -> Path | None:
    done = [p for p in run.checkpoints.glob("step-*") if (p / "state.json").exists()]
    return max(done, key=lambda p: int(p.name.split("-")[1])) if done else None


@torch.no_grad()
def evaluate(ac: ActorCritic, tokenizer, prompts: list[list[dict]], scorer: Scorer, cfg: PPOConfig,
             adapter: str | None) -> dict[str, Any]:
    """Greedy responses to held-out prompts and their mean raw reward (adapter None: the SFT reference)."""
    responses, rewards, lengths = [], [], []
    for i in range(0, len(prompts), cfg.rollout_batch_size):
        ro = rollout(ac, tokenizer, prompts[i: i + cfg.rollout_batch_size], cfg, adapter, greedy=True)
        rewards += scorer(ro.prompts, ro.responses).tolist()
        responses += ro.responses
        lengths += ro.mask.sum(-1).tolist()
    return {"reward": sum(rewards) / len(rewards), "response_length": sum(lengths) / len(lengths),
            "samples": [{"prompt": p[-1]["content"], "response": r, "reward": s}
                        for p, r, s in list(zip(prompts, responses, rewards))[:4]]}


def run(cfg: PPOConfig) -> dict[str, Any]:
    from transformers import get_scheduler

    if not cfg.reward:  # --full and the batch sizes are checked by PPOConfig
        raise ConfigError("no reward: pass --reward RM_RUN_DIR or --reward module:function")
    cfg = replace(cfg, lora_dropout=0.0)  # PPO's ratio must be 1 at the start of each update
    loaded = data.load_prompts(cfg.prompts)
    prompts = [v["prompt"] for v in loaded.values()]
    eval_prompts = [v["prompt"] for v in data.load_prompts(cfg.eval_prompts).values()] if cfg.eval_prompts else []
    lineage, tokenizer = models.tokenizer_for(cfg)
    counts = {"truncated_prompts": chat.count_long_prompts(tokenizer, prompts, cfg.max_prompt_length)}
    print(f"[align] {len(prompts)} prompts; over max_prompt_length (their last tokens kept): "
          f"{counts['truncated_prompts']}", flush=True)
    if reward_run(cfg, tokenizer)[0] is None:  # a wrong --reward is refused before the run directory exists
        function_reward(cfg.reward)
    init_distributed()
    rank, size = world()
    if cfg.rollout_batch_size * size > len(prompts):
        raise ConfigError(f"rollout_batch_size x processes ({cfg.rollout_batch_size * size}) exceeds the "
                          f"{len(prompts)} prompts")

    with Run.open(cfg.output, "ppo", cfg.overwrite, cfg.resume) as out:
        out.start(to_dict(cfg), data={"prompts": loaded.files, "counts": counts})
        ac, scorer, norm, reward_info = build(cfg, lineage, tokenizer)
        kl_ctl = (ppo_math.AdaptiveKLController(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon) if cfg.adaptive_kl
                  else ppo_math.FixedKLController(cfg.kl_coef))
        opt = torch.optim.AdamW([{"params": ac.policy_params, "lr": cfg.learning_rate},
                                 {"params": ac.value_params, "lr": cfg.value_learning_rate}], weight_decay=0.0)
        updates = cfg.steps * cfg.ppo_epochs * math.ceil(cfg.rollout_batch_size / cfg.mini_batch_size)
        sched = get_scheduler(cfg.lr_scheduler, opt, num_warmup_steps=0, num_training_steps=updates)
        torch.manual_seed(cfg.seed + rank)
        random.seed(cfg.seed)
        start, before = 0, None
        ckpt = latest_state(out) if cfg.resume else None
        if ckpt:
            meta = load_state(ckpt, ac, opt, sched, kl_ctl)
            start, before = meta["step"], meta.get("eval_before")
            train.drop_logs_after(out.path / "logs.jsonl", start)
            print(f"[align] resuming from {ckpt} (iteration {start})", flush=True)
        if eval_prompts and before is None:
            before = evaluate(ac, tokenizer, eval_prompts, scorer, cfg, adapter=None)
            print(f"[align] before PPO: eval reward {before['reward']:.3f}", flush=True)
        next_prompts = prompt_batches(len(prompts), cfg.rollout_batch_size, cfg.seed, rank, size)
        logger = StepLogger(out, rank == 0)
        from tqdm.auto import tqdm

        bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="ppo", disable=rank != 0)
        for step in bar:
            # 1. rollout
            t0 = time.perf_counter()
            ro = rollout(ac, tokenizer, [prompts[i] for i in next_prompts(step)], cfg)
            t_gen = time.perf_counter() - t0
            # 2. score, reference/old log-probs, values; KL-penalised per-token rewards; GAE
            t1 = time.perf_counter()
            raw, score = score_rollout(ro, scorer, cfg, norm)
            with torch.no_grad():
                labels = ro.batch["input_ids"][:, ro.batch["start"]:]
                logprobs = ppo_math.logprobs_from_logits(ac.response_logits(ro.batch, POLICY, cfg.temperature), labels)
                ref_logprobs = ppo_math.logprobs_from_logits(ac.response_logits(ro.batch, None, cfg.temperature), labels)
                values = ac.values(ro.batch)
            kl = ppo_math.kl_penalty(logprobs, ref_logprobs, cfg.kl_estimator) * ro.mask
            rewards = ppo_math.token_rewards(score.to(kl.device), kl, kl_ctl.value, ro.mask)
            advantages, returns = ppo_math.gae(rewards, values * ro.mask, ro.mask, cfg.gamma, cfg.lam)
            if cfg.whiten_advantages:
                advantages = ppo_math.masked_whiten(advantages, ro.mask)
            old = {"logprobs": logprobs, "values": values * ro.mask, "advantages": advantages, "returns": returns}
            guard.check_rollout(step + 1, cfg, ro.mask, kl, score=score, **old)  # diverged: stop (align/guard.py)
            # 3. update
            upd = ppo_update(ac, ro, old, opt, sched, cfg)
            guard.check_update(step + 1, cfg, upd)
            t_upd = time.perf_counter() - t1
            seq_kl = float((kl.sum(-1)).mean())
            kl_coef = kl_ctl.value
            kl_ctl.update(seq_kl, len(ro.responses) * size)
            n_gen = float(ro.mask.sum())
            metrics = {
                "reward/raw": float(raw.mean()), "reward/normalized": float(score.mean()),
                "kl": seq_kl, "kl_coef": kl_coef, "stop_rate": float(ro.stopped.float().mean()),
                "response_length": float(ro.mask.sum(-1).mean()),
                "explained_variance": float(ppo_math.explained_variance(values * ro.mask, returns, ro.mask)),
                **{k: v for k, v in upd.items()},
                "time/generate": t_gen, "time/update": t_upd,
                "rollout_tokens_per_s": n_gen / t_gen,
                "update_tokens_per_s": float(ro.batch["attention_mask"].sum()) * cfg.ppo_epochs / t_upd,
            }
            logger.log(step + 1, metrics, bar)
            if rank == 0 and cfg.sample_steps and (step + 1) % cfg.sample_steps == 0:
                logger.samples(step + 1, ro, raw)
            if rank == 0 and cfg.save_steps and (step + 1) % cfg.save_steps == 0 and step + 1 < cfg.steps:
                save_state(out.checkpoints / f"step-{step + 1}", ac, opt, sched, kl_ctl, step + 1,
                           {"eval_before": before})
        after = evaluate(ac, tokenizer, eval_prompts, scorer, cfg, adapter=POLICY) if eval_prompts else None
        if rank == 0:
            ac.model.save_pretrained(out.path / "adapter", selected_adapters=[POLICY], safe_serialization=True)
            tokenizer.save_pretrained(out.path / "tokenizer")
            value = {n: p.detach().cpu().contiguous() for n, p in ac.model.named_parameters() if f".{VALUE}." in n}
            value["value_head.weight"] = ac.value_head.weight.detach().cpu().contiguous()
            (out.path / "value").mkdir(exist_ok=True)
            save_file(value, str(out.path / "value" / "value.safetensors"))
        history = logger.history
        metrics = {"steps": cfg.steps, **reward_info,
                   "reward_start": history[0]["reward/raw"] if history else None,
                   "reward_end": history[-1]["reward/raw"] if history else None,
                   "kl_end": history[-1]["kl"] if history else None,
                   "eval_reward_before": before and before["reward"], "eval_reward_after": after and after["reward"],
                   "eval_samples_before": before and before["samples"], "eval_samples_after": after and after["samples"]}
        out.write(**train.model_fields(cfg, tokenizer, lineage, "causal"))
        out.finish(metrics)
    if rank == 0:
        print(f"ppo done | reward {metrics['reward_start']:.3f} -> {metrics['reward_end']:.3f} | "
              f"kl {metrics['kl_end']:.3f}" + (f" | eval reward {before['reward']:.3f} -> {after['reward']:.3f}"
                                               if after else "") + f" | -> {out.path}", flush=True)
    return out.manifest


class StepLogger:
    """Per-iteration metrics to logs.jsonl, TensorBoard (if installed) and the progress bar."""

    def __init__(self, run: Run, active: bool):
        self.run, self.active, self.history = run, active, []
        self.tb = None
        if active:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run.path / "tensorboard"))
            except ImportError:
                pass

    def log(self, step: int, metrics: dict[str, float], bar) -> None:
        self.history.append(metrics)
        if not self.active:
            return
        with open(self.run.path / "logs.jsonl", "a") as f:
            f.write(json.dumps({"step": step, "time": round(time.time(), 3), **metrics}) + "\n")
        if self.tb:
            for k, v in metrics.items():
                self.tb.add_scalar(k, v, step)
        bar.set_postfix({"reward": f"{metrics['reward/raw']:.3f}", "kl": f"{metrics['kl']:.3f}",
                         "len": f"{metrics['response_length']:.0f}"})

    def samples(self, step: int, ro: Rollout, raw: torch.Tensor) -> None:
        with open(self.run.path / "samples.jsonl", "a") as f:
            for p, r, s in list(zip(ro.prompts, ro.responses, raw.tolist()))[:3]:
                f.write(json.dumps({"step": step, "prompt": p[-1]["content"], "response": r, "reward": s}) + "\n")
                print(f"  [{step}] {p[-1]['content'][:60]!r} -> {r[:80]!r} (reward {s:.3f})", flush=True)
