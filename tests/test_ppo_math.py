"""PPO arithmetic against numbers worked out by hand (the comments show the working)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from align import ppo_math as pm

T = torch.tensor


def test_gae_gamma_1_lambda_1_is_reward_to_go_minus_value():
    r, v, m = T([[1.0, 2.0, 3.0]]), T([[0.5, 0.5, 0.5]]), T([[1.0, 1.0, 1.0]])
    adv, ret = pm.gae(r, v, m, gamma=1.0, lam=1.0)
    # reward-to-go: 6, 5, 3; minus V = 0.5
    assert_close(adv, T([[5.5, 4.5, 2.5]]))
    assert_close(ret, T([[6.0, 5.0, 3.0]]))


def test_gae_by_hand_with_discount():
    r, v, m = T([[0.0, 0.0, 1.0]]), T([[0.1, 0.2, 0.3]]), T([[1.0, 1.0, 1.0]])
    g, lam = 0.9, 0.95
    # delta_2 = 1 + 0 - 0.3 = 0.7                       A_2 = 0.7
    # delta_1 = 0 + 0.9*0.3 - 0.2 = 0.07                A_1 = 0.07 + 0.855*0.7 = 0.6685
    # delta_0 = 0 + 0.9*0.2 - 0.1 = 0.08                A_0 = 0.08 + 0.855*0.6685 = 0.6515675
    adv, ret = pm.gae(r, v, m, g, lam)
    assert_close(adv, T([[0.6515675, 0.6685, 0.7]]))
    assert_close(ret, T([[0.7515675, 0.8685, 1.0]]))


def test_gae_ignores_padding_and_ends_each_row_at_its_last_token():
    m = T([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    r = T([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    v = T([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    adv, _ = pm.gae(r, v, m, 1.0, 1.0)
    garbage_r, garbage_v = r.clone(), v.clone()
    garbage_r[0, 2], garbage_v[0, 2] = 100.0, -50.0  # values at padding must not leak into row 0
    adv2, ret2 = pm.gae(garbage_r, garbage_v, m, 1.0, 1.0)
    assert_close(adv, adv2)
    assert_close(adv[0], T([1.0, 1.0, 0.0]))
    assert float(ret2[0, 2]) == 0.0


def test_token_rewards_put_the_score_on_the_last_real_token():
    kl = T([[0.1, 0.2, 0.3], [0.5, 0.5, 0.5]])
    m = T([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    out = pm.token_rewards(T([2.0, -1.0]), kl, 0.5, m)
    # row 0: -0.05, -0.1 + 2, (padding) 0; row 1: -0.25, -0.25, -0.25 - 1
    assert_close(out, T([[-0.05, 1.9, 0.0], [-0.25, -0.25, -1.25]]))
    empty = pm.token_rewards(T([3.0]), T([[0.0, 0.0]]), 0.1, T([[0.0, 0.0]]))
    assert_close(empty, T([[0.0, 0.0]]))


def test_kl_estimators_by_hand():
    logp, ref = T([[-1.0, -2.0]]), T([[-1.5, -1.0]])
    # k1 = logp - ref = 0.5, -1.0
    assert_close(pm.kl_penalty(logp, ref, "k1"), T([[0.5, -1.0]]))
    # k2 = 0.5 * (0.25, 1.0)
    assert_close(pm.kl_penalty(logp, ref, "k2"), T([[0.125, 0.5]]))
    # k3 = (r - 1) - log r, r = exp(ref - logp) = exp(-0.5), exp(1)
    expected = [math.exp(-0.5) - 1 + 0.5, math.exp(1.0) - 1 - 1.0]
    assert_close(pm.kl_penalty(logp, ref, "k3"), T([expected]))
    assert (pm.kl_penalty(torch.randn(4, 8), torch.randn(4, 8), "k3") >= 0).all()
    with pytest.raises(ValueError, match="unknown KL estimator"):
        pm.kl_penalty(logp, ref, "k9")


def test_whitening_over_masked_elements_only():
    x, m = T([[1.0, 2.0, 3.0, 99.0]]), T([[1.0, 1.0, 1.0, 0.0]])
    w = pm.masked_whiten(x, m)
    # mean 2, unbiased var 1 -> -1, 0, 1; padding stays 0
    assert_close(w, T([[-1.0, 0.0, 1.0, 0.0]]), atol=1e-4, rtol=1e-4)
    assert_close(pm.masked_mean(w, m), T(0.0))


def test_policy_loss_unclipped_and_clipped():
    adv, m = T([[1.0, -1.0]]), T([[1.0, 1.0]])
    old = T([[0.0, 0.0]])
    # ratio 1 everywhere: loss = -mean(A) = 0, nothing clipped
    loss, s = pm.policy_loss(old.clone(), old, adv, m, 0.2)
    assert float(loss) == pytest.approx(0.0) and float(s["clipfrac"]) == 0.0
    # ratio e^0.5 = 1.6487 on both tokens, clip 0.2:
    #   token 0 (A=+1): min(1.6487, 1.2) = 1.2 -> clipped;  token 1 (A=-1): min(-1.6487, -1.2) = -1.6487 -> not
    #   loss = -mean(1.2, -1.6487) = 0.22436
    loss, s = pm.policy_loss(T([[0.5, 0.5]]), old, adv, m, 0.2)
    assert float(loss) == pytest.approx(-(1.2 - math.exp(0.5)) / 2, abs=1e-5)
    assert float(s["clipfrac"]) == pytest.approx(0.5)
    assert float(s["approx_kl"]) == pytest.approx(0.125)  # 0.5 * 0.5^2


def test_value_loss_clipping():
    m = T([[1.0, 1.0]])
    old, ret = T([[0.0, 0.0]]), T([[1.0, 1.0]])
    # V = 0.5 (inside the clip of 0.2? no: 0.5 > 0.2 -> clipped value 0.2): errors (0.25 vs 0.64) -> 0.64
    # V = 0.1 (inside): errors (0.81, 0.81) -> 0.81
    loss, s = pm.value_loss(T([[0.5, 0.1]]), old, ret, m, 0.2)
    assert float(loss) == pytest.approx(0.5 * (0.64 + 0.81) / 2)
    assert float(s["vf_clipfrac"]) == pytest.approx(0.5)


def test_logprobs_and_entropy_match_the_definitions():
    logits = torch.randn(2, 3, 11)
    labels = torch.randint(0, 11, (2, 3))
    expected = torch.log_softmax(logits, -1).gather(-1, labels[..., None]).squeeze(-1)
    assert_close(pm.logprobs_from_logits(logits, labels), expected)
    p = torch.softmax(logits, -1)
    assert_close(pm.entropy_from_logits(logits), -(p * p.log()).sum(-1))
    uniform = torch.zeros(1, 1, 8)
    assert float(pm.entropy_from_logits(uniform)) == pytest.approx(math.log(8))


def test_explained_variance():
    ret, m = T([[1.0, 2.0, 3.0]]), T([[1.0, 1.0, 1.0]])
    assert float(pm.explained_variance(ret.clone(), ret, m)) == pytest.approx(1.0)
    assert float(pm.explained_variance(torch.full_like(ret, 2.0), ret, m)) == pytest.approx(0.0)


def test_adaptive_kl_controller_moves_towards_target_and_round_trips():
    ctl = pm.AdaptiveKLController(0.1, target=6.0, horizon=100)
    ctl.update(12.0, n_steps=10)  # error clipped to +0.2 -> 0.1 * (1 + 0.2 * 10 / 100) = 0.102
    assert ctl.value == pytest.approx(0.102)
    ctl.update(3.0, n_steps=10)  # error -0.5 clipped to -0.2 -> 0.102 * 0.98
    assert ctl.value == pytest.approx(0.102 * 0.98)
    other = pm.AdaptiveKLController(0.5, 6.0, 100)
    other.load_state_dict(ctl.state_dict())
    assert other.value == ctl.value
    fixed = pm.FixedKLController(0.3)
    fixed.update(100.0, 10)
    assert fixed.value == 0.3
