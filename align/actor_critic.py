"""PPO's models on ONE frozen base (optionally 4-bit), every role a LoRA adapter:

    policy     adapter "default" (trainable; starts equal to the SFT model: lineage merged, fresh LoRA = 0)
    reference  the same model with adapters disabled (exactly the SFT model, no copy)
    value      adapter "value" + a linear value head (trainable; initialised from the reward model), or with
               value_model "policy" only a head on the policy's own hidden states (one forward for both roles)
    reward     adapter "reward" + the RM's score head (frozen), when the RM was trained on the same base
               lineage as the policy (otherwise ppo.py scores with a separate model or a function)

Precision: the base computes in the run's dtype (bf16 where the hardware has it, under autocast), the adapters,
heads and optimiser state are fp32, and what PPO's ratios and KL are made of stays fp32: the LM head runs in
fp32 on the response positions only, and values come out of an fp32 head.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from align import models, ppo_math
from align.errors import RunError

POLICY, VALUE, REWARD = "default", "value", "reward"  # the policy is peft's "default" so adapter/ loads as usual


class ActorCritic:
    """A PeftModel whose adapters play the PPO roles; each method runs one role's forward and returns only
    what PPO needs, as fp32."""

    def __init__(self, model, value_head: torch.nn.Linear, reward_head: torch.nn.Linear | None, dtype: torch.dtype,
                 value_on_policy: bool = False):
        self.model, self.value_head, self.reward_head, self.dtype = model, value_head, reward_head, dtype
        self.value_on_policy = value_on_policy
        base = model.get_base_model()
        self.backbone = getattr(base, base.base_model_prefix)  # the transformer without the LM head
        self.device = base.get_output_embeddings().weight.device
        self.lm_head_fp32 = base.get_output_embeddings().weight.detach().float()  # frozen: cast once
        named = list(model.named_parameters())
        self.policy_params = [p for n, p in named if "lora_" in n and f".{POLICY}." in n]
        self.value_params = [p for n, p in named if "lora_" in n and f".{VALUE}." in n] + list(value_head.parameters())
        self.trainable = self.policy_params + self.value_params

    @classmethod
    def build(cls, cfg, lineage: dict[str, Any], tokenizer, rm_adapter: Path | None) -> ActorCritic:
        """Base + lineage merged, the policy adapter, and the value (and reward) adapters: from the RM's adapter
        when it shares the base (`rm_adapter`), else a fresh value adapter with a zero head. With value_model
        "policy" there is no value adapter: a zero head reads the policy's hidden states."""
        from peft import LoraConfig

        model = models.prepare(cfg, "causal", lineage, tokenizer)  # fresh policy LoRA ("default")
        hidden, dtype = model.get_base_model().config.hidden_size, models.compute_dtype(cfg.dtype)
        device = model.get_base_model().get_output_embeddings().weight.device
        value_init = reward_head = None
        on_policy = cfg.value_model == "policy"
        if rm_adapter is not None:
            reward_head = _linear_head(hidden, _add_adapter_from(model, REWARD, rm_adapter, trainable=False),
                                       False).to(device)
            if not on_policy:
                value_init = _add_adapter_from(model, VALUE, rm_adapter, trainable=True)
        elif not on_policy:
            model.add_adapter(VALUE, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, bias="none",
                                                target_modules=models.lora_config(cfg, "CAUSAL_LM").target_modules,
                                                task_type="CAUSAL_LM"))
        models.upcast_trainable(model)
        models.run_in(model, dtype)  # the added adapters too
        if cfg.gradient_checkpointing:
            model.get_base_model().gradient_checkpointing_enable({"use_reentrant": False})
        model.eval()  # no dropout: the ratio new/old must be exactly 1 before the first update
        return cls(model, _linear_head(hidden, value_init, True).to(device), reward_head, dtype, on_policy)

    # --- forwards -----------------------------------------------------------------------------------------

    def autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def use(self, adapter: str) -> None:
        self.model.set_adapter(adapter)
        for p in self.trainable:  # set_adapter freezes the other adapters; both policy and value train
            p.requires_grad_(True)

    def hidden(self, batch: dict[str, Any], adapter: str | None) -> torch.Tensor:
        """Last hidden states under an adapter (None: adapters disabled = the reference model)."""
        kwargs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      position_ids=batch["position_ids"], use_cache=False)
        with self.autocast(), (self.model.disable_adapter() if adapter is None else contextlib.nullcontext()):
            if adapter is not None:
                self.use(adapter)
            return self.backbone(**kwargs).last_hidden_state

    def logprobs(self, batch: dict[str, Any], adapter: str | None, temperature: float) -> torch.Tensor:
        """Log-probs (B, R) of the response tokens under an adapter (None: the reference)."""
        return self._logprobs(self.hidden(batch, adapter), batch, temperature)[0]

    def act(self, batch: dict[str, Any], temperature: float, entropy: bool | None = None
            ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The policy's log-probs, entropy, and the values (B, R): one forward when the value head reads the
        policy's hidden states, a forward per role otherwise. entropy None: not computed; False: computed
        without a gradient (for the logs; its backward through the vocabulary is not free); True: with one."""
        h = self.hidden(batch, POLICY)
        logprobs, ent = self._logprobs(h, batch, temperature, entropy)
        if not self.value_on_policy:
            h = self.hidden(batch, VALUE)
        return logprobs, ent, self.value_head(h[:, batch["start"] - 1: -1].float()).squeeze(-1)

    def _logprobs(self, h: torch.Tensor, batch: dict[str, Any], temperature: float, entropy: bool | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The LM head in fp32 on the response positions only, then log-probs of the labels (and entropy)."""
        logits = F.linear(h[:, batch["start"] - 1: -1].float(), self.lm_head_fp32)
        if temperature != 1.0:
            logits = logits.div_(temperature)
        labels = batch["input_ids"][:, batch["start"]:]
        if entropy and torch.is_grad_enabled():  # an entropy bonus: its gradient goes through autograd
            return ppo_math.label_logprobs(logits, labels)[0], ppo_math.entropy_from_logits(logits)
        return ppo_math.label_logprobs(logits, labels, entropy is not None)

    @torch.no_grad()
    def rewards(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The shared-base RM's score of each row at `last_index` (its end-of-turn token)."""
        ids, mask = batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)
        h = self.hidden({"input_ids": ids, "attention_mask": mask,
                         "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}, REWARD)
        last = h[torch.arange(len(ids), device=self.device), batch["last_index"].to(self.device)]
        return self.reward_head(last.float()).squeeze(-1).cpu()

    @torch.no_grad()
    def generate(self, enc: dict[str, torch.Tensor], adapter: str | None, **kwargs) -> torch.Tensor:
        """KV-cached batched sampling under one role (None: the reference)."""
        with self.autocast(), (self.model.disable_adapter() if adapter is None else contextlib.nullcontext()):
            if adapter is not None:
                self.use(adapter)
            return self.model.generate(**enc, **kwargs)

    # --- saving ---------------------------------------------------------------------------------------------

    def save(self, run, tokenizer) -> None:
        """The policy as a normal adapter (adapter/), the value adapter and head beside it (value/)."""
        from align import train

        train.save_model(self.model, tokenizer, run, adapters=[POLICY])
        run_dir = run.path
        value = {n: p.detach().cpu().contiguous() for n, p in self.model.named_parameters() if f".{VALUE}." in n}
        # value_model "policy": the head alone (it reads the policy adapter's hidden states)
        value["value_head.weight"] = self.value_head.weight.detach().cpu().contiguous()
        (run_dir / "value").mkdir(exist_ok=True)
        save_file(value, str(run_dir / "value" / "value.safetensors"))

    def save_state(self, path: Path, opt, sched, kl_ctl, step: int, extra: dict[str, Any]) -> None:
        """A resumable checkpoint, written aside and renamed: trainable weights, optimiser, scheduler, KL, RNG."""
        tmp = path.with_name(f".{path.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        ids = {id(p) for p in self.trainable}
        named = {n: p.detach().cpu().contiguous() for n, p in self.model.named_parameters() if id(p) in ids}
        named["value_head.weight"] = self.value_head.weight.detach().cpu().contiguous()
        save_file(named, str(tmp / "trainable.safetensors"))
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}, tmp / "state.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, "kl_controller": kl_ctl.state_dict(),
                                                    "python_rng": random.getstate(), **extra}, default=list))
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)

    def load_state(self, path: Path, opt, sched, kl_ctl) -> dict[str, Any]:
        tensors = load_file(str(path / "trainable.safetensors"))
        with torch.no_grad():
            self.value_head.weight.copy_(tensors.pop("value_head.weight"))
            params = dict(self.model.named_parameters())
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


def _add_adapter_from(model, name: str, adapter_dir: Path, trainable: bool) -> torch.Tensor | None:
    """Load an RM's LoRA onto the causal model under `name`; return its score head weight (saved beside the
    LoRA tensors by peft's modules_to_save)."""
    from peft import LoraConfig, set_peft_model_state_dict

    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    model.add_adapter(name, LoraConfig(r=cfg["r"], lora_alpha=cfg["lora_alpha"], lora_dropout=0.0, bias="none",
                                       target_modules=cfg["target_modules"], task_type="CAUSAL_LM"))
    for n, p in model.named_parameters():
        if f".{name}." in n:
            p.data = p.data.float()  # the RM trained fp32 adapter weights: load them unrounded
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    head = next((v for k, v in tensors.items() if "lora_" not in k and k.endswith(("score.weight", "classifier.weight"))),
                None)
    result = set_peft_model_state_dict(model, {k: v for k, v in tensors.items() if "lora_" in k}, adapter_name=name)
    missing = [k for k in result.unexpected_keys if "lora_" in k]
    if missing:
        raise RunError(f"{adapter_dir}: adapter weights do not fit the policy model ({missing[:2]} ...)")
    for n, p in model.named_parameters():
        if f".{name}." in n:
            p.requires_grad_(trainable)
    return head


def _linear_head(hidden: int, init: torch.Tensor | None, trainable: bool) -> torch.nn.Linear:
    """A fp32 scalar head: the RM's score head, or zeros (a fresh value head)."""
    head = torch.nn.Linear(hidden, 1, bias=False, dtype=torch.float32)
    with torch.no_grad():
        head.weight.copy_(init.float() if init is not None else torch.zeros_like(head.weight))
    return head.requires_grad_(trainable)
