"""The arithmetic of PPO for language models, as pure functions over (batch, T) response-token tensors.

`mask` (float or bool) is 1 on real response tokens and 0 on the padding after a response ends. Nothing
here knows about models or adapters, so every piece is tested against numbers worked out by hand
(tests/test_ppo_math.py). References: Schulman et al. 2017 (PPO) and 2016 (GAE); Ziegler et al. 2019
(KL-penalised RLHF, adaptive KL coefficient); Schulman's note "Approximating KL divergence" (k1/k2/k3).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = [
    "masked_mean", "masked_var", "masked_whiten", "kl_penalty", "last_token_index", "token_rewards", "gae",
    "policy_loss", "value_loss", "entropy_from_logits", "logprobs_from_logits", "label_logprobs",
    "explained_variance",
    "FixedKLController", "AdaptiveKLController",
]


def _as_weights(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A bool/int mask as 0/1 in `like`'s floating dtype, so arithmetic never promotes to integers."""
    dtype = like.dtype if like.is_floating_point() else torch.float32
    return mask.to(dtype)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean over real tokens only (all of them, or along `dim`); an empty selection gives 0, not NaN."""
    m = _as_weights(mask, x)
    if dim is None:
        return (x * m).sum() / m.sum().clamp(min=1)
    return (x * m).sum(dim) / m.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance over real tokens only; Bessel-corrected when asked and there are at least 2 of them."""
    m = _as_weights(mask, x)
    mean = masked_mean(x, m)
    var = masked_mean((x - mean) ** 2, m)
    n = m.sum()
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
                  ) -> torch.Tensor:
    """Standardise over the real tokens only (padding would drag the statistics); padding stays 0.

    With shift_mean=False the mean is added back: the scale is normalised but the sign of the batch's
    overall signal is kept (useful for rewards, where the mean carries meaning).
    """
    m = _as_weights(mask, x)
    mean, var = masked_mean(x, m), masked_var(x, m)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * m


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from tokens sampled by the policy.

    k1 = log p - log q: unbiased, but negative on some tokens (high variance).
    k2 = (log p - log q)^2 / 2: biased, low variance, never negative.
    k3 = (r - 1) - log r with r = q / p: unbiased and never negative (r - 1 >= log r), so the
    penalty cannot turn into a bonus on individual tokens.
    """
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio ** 2
    if estimator == "k3":
        # log r = -log_ratio; expm1 keeps r - 1 accurate when the policy is close to the reference
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r} (expected 'k1', 'k2' or 'k3')")


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token, -1 where a row has none (an empty response)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand(mask.shape)
    return torch.where(mask.bool(), positions, torch.full_like(positions, -1)).max(dim=1).values


def token_rewards(score: torch.Tensor, kl: torch.Tensor, kl_coef: float, mask: torch.Tensor) -> torch.Tensor:
    """Per-token reward: -kl_coef * KL at every response token, plus the sequence score at its last token.

    The reward model judges whole responses, so its score lands where the episode ends; the KL penalty
    is paid where each token is chosen. Rows without a response token receive nothing; padding is 0.
    """
    m = _as_weights(mask, kl)
    last = last_token_index(mask)
    is_last = torch.arange(kl.shape[1], device=kl.device)[None, :] == last[:, None]  # never true for -1
    score = score.reshape(-1, 1).to(device=kl.device, dtype=m.dtype)
    return -kl_coef * kl * m + is_last.to(m.dtype) * score


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation, computed backwards over T; each episode ends at its row's last token.

    delta_t = r_t + gamma * V_{t+1} - V_t and A_t = delta_t + gamma * lam * A_{t+1}, where V and A past
    the last real token are 0 (the response is terminal, so nothing at padding can leak into it).
    Returns (advantages, returns = advantages + values), both 0 at padding. No gradient is expected.
    """
    m = _as_weights(mask, rewards)
    rewards, values = rewards * m, values.to(m.dtype) * m
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])
    next_adv = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv = (delta + gamma * lam * next_adv) * m[:, t]
        advantages[:, t] = adv
        # at padding both carries become 0: the last real token sees "nothing beyond the end"
        next_value, next_adv = values[:, t], adv
    return advantages, (advantages + values) * m


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, clip_range: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped surrogate, as a loss to minimise: masked mean of max(-A r, -A clip(r, 1-c, 1+c)).

    The clip removes the incentive to move the ratio r = p / p_old beyond 1 +- c in the direction
    the advantage rewards, keeping each update near the policy that collected the data.
    Stats are detached 0-dim tensors (call float() to log them):
      clipfrac: share of real tokens where the clipped branch is the active one (its loss is larger);
      approx_kl: masked mean of (log p - log p_old)^2 / 2 (k2, never negative; used for early stopping);
      approx_kl_k1: masked mean of log p_old - log p (k1 estimate of KL(old || new));
      ratio: masked mean of r.
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip_range, 1 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean((clipped > unclipped).float(), mask),
                 "approx_kl": masked_mean(0.5 * log_ratio.detach() ** 2, mask),
                 "approx_kl_k1": masked_mean(-log_ratio.detach(), mask),
                 "ratio": masked_mean(ratio.detach(), mask)}
    return loss, stats


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip_range_value: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss: masked mean of 0.5 * max((V - R)^2, (clip(V, V_old - c, V_old + c) - R)^2).

    Taking the larger error means moving V more than c from V_old earns no credit, like the policy clip.
    Stats are detached 0-dim tensors: vf_clipfrac (share of real tokens where the clipped error is the
    larger) and value_error (masked mean of (V - R)^2, unclipped).
    """
    clipped_values = old_values + (values - old_values).clamp(-clip_range_value, clip_range_value)
    unclipped_err, clipped_err = (values - returns) ** 2, (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_err, clipped_err), mask)
    with torch.no_grad():
        stats = {"vf_clipfrac": masked_mean((clipped_err > unclipped_err).float(), mask),
                 "value_error": masked_mean(unclipped_err.detach(), mask)}
    return loss, stats


def _row_chunks(logits: torch.Tensor, chunk_rows: int) -> list[torch.Tensor]:
    return list(logits.reshape(-1, logits.shape[-1]).split(chunk_rows))


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor, chunk_rows: int = 1024) -> torch.Tensor:
    """log softmax(logits)[label], i.e. logit[label] - logsumexp(logits), in float32.

    Never materialises the full (batch, T, vocab) log-softmax. Half-precision logits are upcast only
    `chunk_rows` token positions at a time, so without autograd the extra memory is about
    chunk_rows * vocab floats (with autograd, backward keeps what it needs regardless).
    """
    picked = torch.gather(logits, -1, labels.unsqueeze(-1).long()).squeeze(-1).float()
    lse = torch.cat([torch.logsumexp(c.float(), dim=-1) for c in _row_chunks(logits, chunk_rows)])
    return picked - lse.reshape(picked.shape)


class _LabelLogprobs(torch.autograd.Function):
    """log softmax(z)[label] with a hand-written backward: d/dz = onehot(label) - softmax(z), times the
    incoming gradient. Autograd's gather + logsumexp make ~10 passes over a (rows, vocab) tensor forward and
    back; this makes ~5 and keeps softmax(z) (not z) for the backward, which also gives the entropy for free."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor, entropy: bool):
        lse = torch.logsumexp(logits, -1, keepdim=True)
        picked = logits.gather(-1, labels.unsqueeze(-1)).sub_(lse).squeeze(-1)
        probs = torch.sub(logits, lse).exp_()
        ent = None
        if entropy:  # H = lse - sum p z, read off the same probabilities, no gradient
            ent = lse.squeeze(-1) - torch.einsum("nv,nv->n", probs, logits)
            ctx.mark_non_differentiable(ent)
        ctx.save_for_backward(probs, labels)
        return picked, ent

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _grad_entropy):
        probs, labels = ctx.saved_tensors
        g = grad.unsqueeze(-1)
        return torch.mul(probs, g.neg()).scatter_add_(-1, labels.unsqueeze(-1), g), None, None


def label_logprobs(logits: torch.Tensor, labels: torch.Tensor, entropy: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of `labels` under float32 `logits` (..., vocab) and, if asked, the entropy (no gradient):
    what PPO's update needs per micro-step, in the fewest passes over the vocabulary (see _LabelLogprobs)."""
    shape = labels.shape
    flat, lab = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1).long()
    if not (torch.is_grad_enabled() and logits.requires_grad):  # nothing to save for a backward
        lp, ent = logprobs_from_logits(flat, lab), entropy_from_logits(flat) if entropy else None
    else:
        with torch.autocast(logits.device.type, enabled=False):  # its einsum stays in the logits' dtype
            lp, ent = _LabelLogprobs.apply(flat, lab, entropy)
    return lp.reshape(shape), None if ent is None else ent.reshape(shape)


def entropy_from_logits(logits: torch.Tensor, chunk_rows: int = 1024) -> torch.Tensor:
    """Per-token entropy, H = logsumexp(z) - sum_i softmax(z)_i z_i, in float32 and chunked as above.

    Working from logsumexp avoids log(p) of underflowed probabilities, so large logits stay finite.
    Logits are expected finite (a -inf entry would give 0 * -inf).
    """
    out = []
    for c in _row_chunks(logits, chunk_rows):
        z = c.float()
        out.append(torch.logsumexp(z, dim=-1) - (torch.softmax(z, dim=-1) * z).sum(-1))
    return torch.cat(out).reshape(logits.shape[:-1])


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - Var(R - V) / Var(R) over real tokens: 1 for a perfect value model, 0 for the best constant.

    When the returns do not vary it is undefined; we return 1 if V matches R exactly and 0 otherwise,
    so the logged metric stays finite instead of exploding to -1e8 or NaN.
    """
    var_returns = masked_var(returns, mask)
    var_error = masked_var(returns - values, mask)
    degenerate = (var_error == 0).to(var_returns.dtype)
    return torch.where(var_returns > 0, 1 - var_error / var_returns.clamp(min=1e-12), degenerate)


class FixedKLController:
    """A constant KL coefficient; the same interface as AdaptiveKLController, so the loop need not care."""

    def __init__(self, kl_coef: float):
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        """Nothing to adapt."""

    def state_dict(self) -> dict[str, Any]:
        """Plain floats, so the state can go straight into a JSON checkpoint."""
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController(FixedKLController):
    """Ziegler et al. 2019: steer the KL coefficient so that the observed KL tracks `target`.

    error = clip(KL / target - 1, -0.2, 0.2); coef *= 1 + error * n_steps / horizon. The clip keeps one
    noisy batch from swinging the coefficient; `horizon` (in samples) sets how fast it adapts.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        if target <= 0 or horizon <= 0:
            raise ValueError(f"adaptive KL needs target > 0 and horizon > 0 (got {target}, {horizon})")
        super().__init__(init_kl_coef)
        self.target, self.horizon = float(target), horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        """Adjust after a batch of `n_steps` samples whose mean sequence KL was `current_kl`."""
        error = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
