"""Divergence guards: a run whose training blew up stops, is marked failed, and says at which step and what
to change (errors.TrainingDiverged, exit code 3). Pure functions; train.DivergenceGuard applies them to the
Trainer stages (SFT, RM, DPO) and ppo.run to each PPO iteration.

The rules are chosen never to fire on a healthy run:
  - a loss, gradient norm, value, advantage, return, log-prob, score, ratio or KL that is NaN or infinite;
  - gradients exactly zero on every optimiser step of a logging interval while the loss is not zero: the
    model has saturated (after a learning rate far too high its activations overflow, every output is the
    same and nothing can move it again). A healthy model's gradient is exactly zero only where its loss is
    (a hinge loss whose pairs all clear the margin);
  - a logged loss above LOSS_FACTOR x the first logged loss + LOSS_MARGIN nats (healthy losses fall, and
    noise between batches stays far below that);
  - PPO: a mean KL to the reference above KL_PER_TOKEN_LIMIT nats per response token (the policy makes its
    own tokens e^10 ~ 22,000 times likelier than the SFT model does, on every token: it has left it).
Under fp16 the loss scaler skips steps whose gradients overflow: up to FP16_SKIPS in a row are tolerated.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from align.errors import TrainingDiverged

LOSS_FACTOR, LOSS_MARGIN = 3.0, 2.0
KL_PER_TOKEN_LIMIT = 10.0
FP16_SKIPS = 20


def advice(learning_rate: float | None, ppo: bool = False) -> str:
    lr = f" (now {learning_rate:g})" if learning_rate is not None else ""
    more = ("; raise --kl-coef (or use --adaptive-kl) if the KL runs away" if ppo else
            "; a longer --warmup-ratio or a smaller --max-grad-norm also help")
    return f"Lower --learning-rate{lr}, e.g. 10x{more}; then run it again (--overwrite)."


def diverged(step: int, what: str, learning_rate: float | None = None, ppo: bool = False) -> TrainingDiverged:
    where = f"PPO iteration {step}" if ppo else f"step {step}"
    return TrainingDiverged(f"training diverged at {where}: {what}. {advice(learning_rate, ppo)}")


def _finite(value: Any, mask: torch.Tensor | None = None) -> bool:
    if torch.is_tensor(value):
        if mask is not None and value.shape == mask.shape:
            value = value[mask.bool()]  # padding positions hold no meaning (and may hold anything)
        return bool(torch.isfinite(value).all())
    return value is None or math.isfinite(float(value))


def not_finite(mask: torch.Tensor | None = None, **values: Any) -> list[str]:
    """The names of the values (numbers or tensors, tensors shaped like `mask` read where it is 1) that hold
    a NaN or an infinity."""
    return [name for name, value in values.items() if not _finite(value, mask)]


def grad_norm(model) -> float | None:
    """The total L2 norm of the gradients the model holds (None when it holds none here: sharded ones)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads or any(type(g) is not torch.Tensor for g in grads):  # DeepSpeed/FSDP: not ours to read
        return None
    norms = torch.stack([torch.linalg.vector_norm(g, dtype=torch.float32).to(grads[0].device) for g in grads])
    return float(torch.linalg.vector_norm(norms))


# --- the Trainer stages ------------------------------------------------------------------------------------

def check_log(step: int, loss: float, grad: float | None, first_loss: float | None, zero_since: int | None,
              interval_start: int, learning_rate: float | None = None) -> None:
    """A logged training loss (mean since the last log) and gradient norm at `step`. `zero_since`: the first
    step of the current run of steps with exactly zero gradients (None: the last step's were not);
    `interval_start`: the first step this log covers."""
    bad = not_finite(loss=loss, grad_norm=grad)
    if bad:
        raise diverged(step, f"{' and '.join(bad)} not finite (NaN or inf): loss {loss:.4g}, grad norm "
                             f"{grad if grad is None else format(grad, '.4g')}", learning_rate)
    if zero_since is not None and zero_since <= interval_start and loss > 1e-6:
        raise diverged(zero_since, f"the gradients are exactly zero from there on while the loss is {loss:.4g}: "
                                   f"the model saturated and cannot learn any more", learning_rate)
    if first_loss is not None and loss > LOSS_FACTOR * first_loss + LOSS_MARGIN:
        raise diverged(step, f"the loss rose from {first_loss:.4g} to {loss:.4g} (over {LOSS_FACTOR:g}x the "
                             f"first + {LOSS_MARGIN:g})", learning_rate)


# --- PPO ---------------------------------------------------------------------------------------------------

def check_rollout(step: int, cfg, mask: torch.Tensor, kl: torch.Tensor, **tensors: torch.Tensor) -> None:
    """After scoring a rollout batch: scores, log-probs, values, advantages, returns and the per-token KL
    (tensors shaped like `mask` are read on response tokens only) are finite, and the KL to the reference
    has not run away."""
    lr = getattr(cfg, "learning_rate", None)
    bad = not_finite(mask, kl=kl, **tensors)
    if bad:
        raise diverged(step, f"{', '.join(bad)} not finite (NaN or inf)", lr, ppo=True)
    tokens = float(mask.sum())
    per_token = float((kl * mask).sum()) / tokens if tokens else 0.0
    if abs(per_token) > KL_PER_TOKEN_LIMIT:
        raise diverged(step, f"the KL to the reference ran away: {per_token:.3g} nats per response token "
                             f"(limit {KL_PER_TOKEN_LIMIT:g})", lr, ppo=True)


def check_update(step: int, cfg, stats: dict[str, float]) -> None:
    """After an iteration's updates (stats averaged over its minibatches): losses, ratio, approx KL and
    gradient norm are finite, and the gradients did not vanish while the (weighted) value loss is not zero."""
    lr = getattr(cfg, "learning_rate", None)
    bad = not_finite(**{k: v for k, v in stats.items() if k in ("policy_loss", "value_loss", "ratio", "approx_kl",
                                                                "entropy", "grad_norm")})
    if bad:
        raise diverged(step, f"{', '.join(bad)} not finite (NaN or inf)", lr, ppo=True)
    if stats.get("grad_norm") == 0 and stats.get("value_loss", 0) > 1e-6 and getattr(cfg, "vf_coef", 1.0) > 0:
        # the value loss has a gradient unless the model saturated (with vf_coef 0 and advantages all 0, none)
        raise diverged(step, f"the gradients are exactly zero while the value loss is {stats['value_loss']:.4g}: "
                             f"the model saturated and cannot learn any more", lr, ppo=True)
