"""PPO arithmetic against numbers worked out by hand (the comments show the working)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.testing import assert_close

from align import ppo_math as pm

T = torch.tensor


# --- masked statistics ---------------------------------------------------------------------------

def test_masked_mean_overall_per_row_and_empty():
    x = T([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    m = T([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    # (1 + 2 + 4) / 3
    assert_close(pm.masked_mean(x, m), T(7.0 / 3.0))
    # row 0: (1 + 2) / 2; row 1: 4 / 1
    assert_close(pm.masked_mean(x, m, dim=1), T([1.5, 4.0]))
    # a bool mask means the same thing; a row with no tokens gives 0, not NaN
    assert_close(pm.masked_mean(x, m.bool()), T(7.0 / 3.0))
    assert_close(pm.masked_mean(x, T([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]), dim=1), T([1.5, 0.0]))


def test_masked_var_by_hand():
    x, m = T([[1.0, 2.0, 3.0, 99.0]]), T([[1.0, 1.0, 1.0, 0.0]])
    # mean 2, squared deviations 1 + 0 + 1 = 2; unbiased 2 / 2 = 1, biased 2 / 3
    assert_close(pm.masked_var(x, m), T(1.0))
    assert_close(pm.masked_var(x, m, unbiased=False), T(2.0 / 3.0))


def test_whitening_over_masked_elements_only():
    x, m = T([[2.0, 4.0, 6.0, 99.0]]), T([[1.0, 1.0, 1.0, 0.0]])
    # mean 4, unbiased var (4 + 0 + 4) / 2 = 4, std 2 -> -1, 0, 1; padding stays 0
    assert_close(pm.masked_whiten(x, m), T([[-1.0, 0.0, 1.0, 0.0]]), atol=1e-6, rtol=1e-6)
    # shift_mean=False adds the mean 4 back: 3, 4, 5
    assert_close(pm.masked_whiten(x, m, shift_mean=False), T([[3.0, 4.0, 5.0, 0.0]]), atol=1e-6, rtol=1e-6)


def test_whitening_gives_mean_0_var_1_and_ignores_padding():
    torch.manual_seed(0)
    x = torch.randn(4, 7) * 3 + 5
    m = T([[1] * 7, [1] * 3 + [0] * 4, [1] * 5 + [0] * 2, [1] + [0] * 6]).float()
    w = pm.masked_whiten(x, m)
    assert float(pm.masked_mean(w, m)) == pytest.approx(0.0, abs=1e-6)
    assert float(pm.masked_var(w, m)) == pytest.approx(1.0, abs=1e-5)
    assert (w[m == 0] == 0).all()
    junk = torch.where(m.bool(), x, torch.full_like(x, 1e4))
    assert_close(pm.masked_whiten(junk, m), w)


# --- KL and rewards ------------------------------------------------------------------------------

def test_kl_estimators_by_hand():
    logp, ref = T([[-1.0, -2.0]]), T([[-1.5, -1.0]])
    # k1 = logp - ref = 0.5, -1.0
    assert_close(pm.kl_penalty(logp, ref, "k1"), T([[0.5, -1.0]]))
    # k2 = 0.5 * (0.5^2, 1.0^2) = 0.125, 0.5
    assert_close(pm.kl_penalty(logp, ref, "k2"), T([[0.125, 0.5]]))
    # k3 = (r - 1) - log r, r = exp(ref - logp):
    #   r = exp(-0.5) = 0.6065306597 -> -0.3934693403 + 0.5 = 0.1065306597
    #   r = exp(+1.0) = 2.7182818285 ->  1.7182818285 - 1.0 = 0.7182818285
    assert_close(pm.kl_penalty(logp, ref, "k3"), T([[0.1065306597, 0.7182818285]]))
    assert_close(pm.kl_penalty(logp, logp, "k3"), T([[0.0, 0.0]]))  # identical policies: exactly 0


def test_k3_is_never_negative_and_unknown_estimator_raises():
    torch.manual_seed(0)
    logp, ref = torch.randn(8, 16) * 2, torch.randn(8, 16) * 2
    assert (pm.kl_penalty(logp, ref, "k3") >= 0).all()
    assert (pm.kl_penalty(logp, ref, "k1") < 0).any()  # k1 can go negative per token; k3 cannot
    with pytest.raises(ValueError, match="unknown KL estimator"):
        pm.kl_penalty(logp, ref, "k9")


def test_last_token_index():
    m = T([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    assert pm.last_token_index(m).tolist() == [1, 2, -1]


def test_token_rewards_put_the_score_on_the_last_real_token():
    kl = T([[0.1, 0.2, 0.3], [0.5, 0.5, 0.5]])
    m = T([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    # kl_coef 0.5 -> -0.5 * kl at each real token, score at the last one:
    #   row 0: -0.05, -0.1 + 2 = 1.9, (padding) 0        row 1: -0.25, -0.25, -0.25 - 1 = -1.25
    expected = T([[-0.05, 1.9, 0.0], [-0.25, -0.25, -1.25]])
    assert_close(pm.token_rewards(T([2.0, -1.0]), kl, 0.5, m), expected)
    assert_close(pm.token_rewards(T([[2.0], [-1.0]]), kl, 0.5, m.bool()), expected)  # (B, 1) score, bool mask
    # a row with no response token gets neither score nor penalty
    empty = pm.token_rewards(T([3.0]), T([[0.4, 0.4]]), 0.1, T([[0.0, 0.0]]))
    assert_close(empty, T([[0.0, 0.0]]))


# --- GAE -----------------------------------------------------------------------------------------

def test_gae_gamma_1_lambda_1_is_reward_to_go_minus_value():
    r, v, m = T([[1.0, 2.0, 3.0]]), T([[0.5, 0.5, 0.5]]), T([[1.0, 1.0, 1.0]])
    adv, ret = pm.gae(r, v, m, gamma=1.0, lam=1.0)
    # reward-to-go: 1+2+3 = 6, 2+3 = 5, 3; minus V = 0.5
    assert_close(adv, T([[5.5, 4.5, 2.5]]))
    assert_close(ret, T([[6.0, 5.0, 3.0]]))


def test_gae_gamma_1_lambda_1_with_padding():
    r = T([[1.0, 2.0, 7.0], [0.0, 0.0, 1.0]])
    v = T([[0.5, 1.0, 9.0], [0.2, 0.4, 0.6]])
    m = T([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    adv, ret = pm.gae(r, v, m, 1.0, 1.0)
    # row 0 ends at t=1: reward-to-go 1+2 = 3, 2; minus V: 2.5, 1.0; the 7 and 9 at padding count for nothing
    # row 1: reward-to-go 1, 1, 1; minus V: 0.8, 0.6, 0.4
    assert_close(adv, T([[2.5, 1.0, 0.0], [0.8, 0.6, 0.4]]))
    assert_close(ret, T([[3.0, 2.0, 0.0], [1.0, 1.0, 1.0]]))


def test_gae_by_hand_with_discount():
    r, v, m = T([[0.0, 0.0, 1.0]]), T([[0.1, 0.2, 0.3]]), T([[1.0, 1.0, 1.0]])
    g, lam = 0.9, 0.95  # gamma * lam = 0.855
    # delta_2 = 1 + 0.9*0 - 0.3 = 0.7                   A_2 = 0.7
    # delta_1 = 0 + 0.9*0.3 - 0.2 = 0.07                A_1 = 0.07 + 0.855*0.7 = 0.6685
    # delta_0 = 0 + 0.9*0.2 - 0.1 = 0.08                A_0 = 0.08 + 0.855*0.6685 = 0.6515675
    adv, ret = pm.gae(r, v, m, g, lam)
    assert_close(adv, T([[0.6515675, 0.6685, 0.7]]))
    # returns = A + V
    assert_close(ret, T([[0.7515675, 0.8685, 1.0]]))


def test_gae_padding_is_terminal_and_ignored():
    m = T([[1.0, 1.0, 0.0]])
    r, v = T([[0.0, 1.0, 0.0]]), T([[0.5, 0.5, 0.0]])
    # the row ends at t=1, so V_2 counts as 0:
    # delta_1 = 1 + 0.9*0 - 0.5 = 0.5                   A_1 = 0.5
    # delta_0 = 0 + 0.9*0.5 - 0.5 = -0.05               A_0 = -0.05 + 0.855*0.5 = 0.3775
    adv, ret = pm.gae(r, v, m, 0.9, 0.95)
    assert_close(adv, T([[0.3775, 0.5, 0.0]]))
    assert_close(ret, T([[0.8775, 1.0, 0.0]]))
    garbage_r, garbage_v = r.clone(), v.clone()
    garbage_r[0, 2], garbage_v[0, 2] = 100.0, -50.0  # rewards/values at padding must not leak in
    adv2, ret2 = pm.gae(garbage_r, garbage_v, m, 0.9, 0.95)
    assert_close(adv2, adv)
    assert_close(ret2, ret)


# --- losses --------------------------------------------------------------------------------------

def test_policy_loss_not_clipped_at_ratio_1():
    adv, m, old = T([[1.0, -1.0]]), T([[1.0, 1.0]]), T([[0.0, 0.0]])
    # ratio 1 everywhere: loss = -mean(1, -1) = 0, nothing clipped, no KL
    loss, s = pm.policy_loss(old.clone(), old, adv, m, 0.2)
    assert float(loss) == pytest.approx(0.0)
    assert float(s["clipfrac"]) == 0.0
    assert float(s["approx_kl"]) == 0.0 and float(s["approx_kl_k1"]) == 0.0
    assert float(s["ratio"]) == pytest.approx(1.0)


def test_policy_loss_with_clipping_active():
    adv, m, old = T([[1.0, -1.0]]), T([[1.0, 1.0]]), T([[0.0, 0.0]])
    # ratio e^0.5 = 1.6487212707 on both tokens, clip 0.2 -> clip(r) = 1.2:
    #   token 0 (A=+1): min(1.6487, 1.2) = 1.2 -> clipped branch active
    #   token 1 (A=-1): min(-1.6487, -1.2) = -1.6487 -> unclipped
    #   loss = -(1.2 - 1.6487212707) / 2 = 0.2243606354; clipfrac 1/2
    logp = T([[0.5, 0.5]], requires_grad=True)
    loss, s = pm.policy_loss(logp, old, adv, m, 0.2)
    assert loss.item() == pytest.approx(0.2243606354, abs=1e-6)
    assert float(s["clipfrac"]) == pytest.approx(0.5)
    assert float(s["approx_kl"]) == pytest.approx(0.125)  # 0.5 * 0.5^2
    assert float(s["approx_kl_k1"]) == pytest.approx(-0.5)  # mean(old - logp)
    assert float(s["ratio"]) == pytest.approx(1.6487212707, abs=1e-6)
    # the clipped token gets no gradient; the other: d/dlogp (r / 2) = r / 2 = 0.8243606354
    loss.backward()
    assert_close(logp.grad, T([[0.0, 0.8243606354]]))
    # ratio e^-0.5 = 0.6065306597, clip -> 0.8:
    #   token 0 (A=+1): min(0.6065, 0.8) = 0.6065 -> unclipped;  token 1 (A=-1): min(-0.6065, -0.8) = -0.8 -> clipped
    #   loss = -(0.6065306597 - 0.8) / 2 = 0.0967346702
    loss, s = pm.policy_loss(T([[-0.5, -0.5]]), old, adv, m, 0.2)
    assert float(loss) == pytest.approx(0.0967346702, abs=1e-6)
    assert float(s["clipfrac"]) == pytest.approx(0.5)


def test_policy_loss_ignores_padding():
    m = T([[1.0, 1.0, 0.0]])
    old, adv = T([[0.0, 0.0, 0.0]]), T([[1.0, -1.0, 0.0]])
    loss, s = pm.policy_loss(T([[0.5, 0.5, 0.0]]), old, adv, m, 0.2)
    loss2, s2 = pm.policy_loss(T([[0.5, 0.5, 5.0]]), old, T([[1.0, -1.0, 30.0]]), m, 0.2)
    assert float(loss2) == pytest.approx(float(loss)) == pytest.approx(0.2243606354, abs=1e-6)
    assert {k: float(v) for k, v in s2.items()} == pytest.approx({k: float(v) for k, v in s.items()})
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad for v in s.values())


def test_value_loss_clipping():
    m = T([[1.0, 1.0, 1.0, 0.0]])
    old, ret = T([[0.0, 0.0, 0.0, 0.0]]), T([[1.0, 1.0, 1.0, 1.0]])
    # clip 0.2 around V_old = 0:
    #   V = 0.5  -> clipped V 0.2:  (0.5-1)^2 = 0.25 vs (0.2-1)^2 = 0.64 -> 0.64 (clipped branch active)
    #   V = 0.1  -> inside the clip: 0.81 vs 0.81 -> 0.81
    #   V = -0.5 -> clipped V -0.2: (-0.5-1)^2 = 2.25 vs (-0.2-1)^2 = 1.44 -> 2.25 (unclipped)
    #   padding (V = 42) ignored;  loss = 0.5 * (0.64 + 0.81 + 2.25) / 3 = 0.6166667
    values = T([[0.5, 0.1, -0.5, 42.0]], requires_grad=True)
    loss, s = pm.value_loss(values, old, ret, m, 0.2)
    assert loss.item() == pytest.approx(0.5 * (0.64 + 0.81 + 2.25) / 3)
    assert float(s["vf_clipfrac"]) == pytest.approx(1 / 3)
    assert float(s["value_error"]) == pytest.approx((0.25 + 0.81 + 2.25) / 3)
    # gradient: clipped token 0 none; token 1: (V - R) / 3 = -0.3; token 2: -1.5 / 3 = -0.5; padding none
    loss.backward()
    assert_close(values.grad, T([[0.0, -0.3, -0.5, 0.0]]))


# --- logits --------------------------------------------------------------------------------------

def test_logprobs_and_entropy_by_hand():
    # logits 0, 0, ln 2 -> probs 1/4, 1/4, 1/2
    logits = T([[[0.0, 0.0, math.log(2.0)]] * 2])
    # log p(label 2) = ln 0.5 = -0.6931471806; log p(label 0) = ln 0.25 = -1.3862943611
    assert_close(pm.logprobs_from_logits(logits, T([[2, 0]])), T([[-0.6931471806, -1.3862943611]]))
    # H = 2 * 0.25 * ln 4 + 0.5 * ln 2 = 0.6931471806 + 0.3465735903 = 1.0397207709
    assert_close(pm.entropy_from_logits(logits), T([[1.0397207709, 1.0397207709]]))
    # adding a constant changes nothing, even a large one (logsumexp keeps it finite)
    # (float32 spacing near 1000 is 6e-5, hence the looser tolerance)
    shifted = logits + 1000.0
    assert_close(pm.logprobs_from_logits(shifted, T([[2, 0]])), T([[-0.6931471806, -1.3862943611]]), atol=1e-4, rtol=0)
    assert_close(pm.entropy_from_logits(shifted), T([[1.0397207709, 1.0397207709]]), atol=1e-4, rtol=0)
    # uniform over 4 in bfloat16 (exact): log p = -ln 4, H = ln 4, computed in float32
    uniform = torch.zeros(1, 1, 4, dtype=torch.bfloat16)
    out = pm.logprobs_from_logits(uniform, T([[3]]))
    assert out.dtype == torch.float32
    assert_close(out, T([[-1.3862943611]]))
    assert_close(pm.entropy_from_logits(uniform), T([[1.3862943611]]))


def test_logprobs_and_entropy_match_the_definitions_in_chunks_with_gradients():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11, requires_grad=True)
    labels = torch.randint(0, 11, (2, 5))
    expected = torch.log_softmax(logits, -1).gather(-1, labels[..., None]).squeeze(-1)
    got = pm.logprobs_from_logits(logits, labels, chunk_rows=3)  # 10 positions in chunks of 3, 3, 3, 1
    assert_close(got, expected)
    (g_expected,) = torch.autograd.grad(expected.sum(), logits)
    (g_got,) = torch.autograd.grad(got.sum(), logits)
    assert_close(g_got, g_expected)
    p = torch.softmax(logits, -1)
    assert_close(pm.entropy_from_logits(logits, chunk_rows=3), -(p * p.log()).sum(-1))


def test_label_logprobs_hand_written_backward_matches_autograd():
    # by hand first (as above): log p = ln 1/2, ln 1/4; H = 1.0397207709, with and without a graph
    logits = T([[[0.0, 0.0, math.log(2.0)]] * 2])
    for z in (logits, logits.clone().requires_grad_(True)):
        lp, ent = pm.label_logprobs(z, T([[2, 0]]).long(), entropy=True)
        assert_close(lp, T([[-0.6931471806, -1.3862943611]]))
        assert_close(ent, T([[1.0397207709, 1.0397207709]]))
    assert pm.label_logprobs(logits, T([[2, 0]]).long())[1] is None
    # then against autograd's log_softmax in float64, with an uneven upstream gradient (PPO's is per token)
    torch.manual_seed(0)
    z = (torch.randn(3, 4, 50, dtype=torch.float64) * 4).requires_grad_(True)
    labels = torch.randint(0, 50, (3, 4))
    upstream = torch.randn(3, 4, dtype=torch.float64)
    expected = torch.log_softmax(z, -1).gather(-1, labels[..., None]).squeeze(-1)
    got, ent = pm.label_logprobs(z, labels, entropy=True)
    assert_close(got, expected, atol=1e-12, rtol=0)
    p = torch.softmax(z, -1)
    assert_close(ent, -(p * p.log()).sum(-1), atol=1e-12, rtol=0)
    assert not ent.requires_grad  # logged, not optimised
    (g_expected,) = torch.autograd.grad((expected * upstream).sum(), z)
    (g_got,) = torch.autograd.grad((got * upstream).sum(), z)
    assert_close(g_got, g_expected, atol=1e-12, rtol=0)
    # called inside a bf16 autocast region it still computes in float32
    z32 = z.detach().float().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lp32, ent32 = pm.label_logprobs(z32, labels, entropy=True)
    assert lp32.dtype == ent32.dtype == torch.float32
    assert_close(lp32.double(), expected, atol=1e-5, rtol=0)
    assert_close(ent32.double(), ent, atol=1e-5, rtol=0)
    small, small_labels = torch.randn(2, 7, dtype=torch.float64, requires_grad=True), torch.tensor([3, 6])
    assert torch.autograd.gradcheck(lambda x: pm.label_logprobs(x, small_labels)[0], (small,))


def test_explained_variance():
    m = T([[1.0, 1.0, 1.0]])
    ret = T([[1.0, 2.0, 3.0]])
    assert float(pm.explained_variance(ret.clone(), ret, m)) == pytest.approx(1.0)  # perfect
    assert float(pm.explained_variance(torch.full_like(ret, 2.0), ret, m)) == pytest.approx(0.0)  # the mean
    # V = 1, 2, 2 -> errors 0, 0, 1: mean 1/3, var ((1/9) + (1/9) + (4/9)) / 2 = 1/3; Var(R) = 1 -> 1 - 1/3
    assert float(pm.explained_variance(T([[1.0, 2.0, 2.0]]), ret, m)) == pytest.approx(2 / 3)
    # padding ignored: the same numbers with junk appended
    mp = T([[1.0, 1.0, 1.0, 0.0]])
    assert float(pm.explained_variance(T([[1.0, 2.0, 2.0, -9.0]]), T([[1.0, 2.0, 3.0, 50.0]]), mp)) \
        == pytest.approx(2 / 3)
    # constant returns: finite (1 if predicted exactly, else 0)
    flat = T([[2.0, 2.0, 2.0]])
    assert float(pm.explained_variance(flat.clone(), flat, m)) == 1.0
    assert float(pm.explained_variance(T([[1.0, 2.0, 3.0]]), flat, m)) == 0.0


# --- KL controllers ------------------------------------------------------------------------------

def test_adaptive_kl_controller_moves_towards_target():
    ctl = pm.AdaptiveKLController(0.1, target=6.0, horizon=100)
    ctl.update(6.6, n_steps=10)  # error 6.6/6 - 1 = 0.1 -> 0.1 * (1 + 0.1 * 10/100) = 0.101
    assert ctl.value == pytest.approx(0.101)
    ctl.update(12.0, n_steps=10)  # error 1.0 clipped to +0.2 -> 0.101 * (1 + 0.2 * 0.1) = 0.10302
    assert ctl.value == pytest.approx(0.10302)
    ctl.update(3.0, n_steps=10)  # error -0.5 clipped to -0.2 -> 0.10302 * 0.98 = 0.1009596
    assert ctl.value == pytest.approx(0.1009596)
    ctl.update(6.0, n_steps=10)  # on target: unchanged
    assert ctl.value == pytest.approx(0.1009596)
    with pytest.raises(ValueError):
        pm.AdaptiveKLController(0.1, target=0.0, horizon=100)


def test_kl_controllers_round_trip_state_dict_through_json():
    ctl = pm.AdaptiveKLController(0.1, target=6.0, horizon=1000)
    for kl in (9.0, 7.3, 2.1):
        ctl.update(kl, n_steps=64)
    resumed = pm.AdaptiveKLController(0.1, target=6.0, horizon=1000)
    resumed.load_state_dict(json.loads(json.dumps(ctl.state_dict())))
    assert resumed.value == ctl.value
    for kl in (4.0, 8.8):  # the resumed run continues exactly as the original
        ctl.update(kl, 64)
        resumed.update(kl, 64)
        assert resumed.value == ctl.value
    fixed = pm.FixedKLController(0.3)
    fixed.update(100.0, 10)
    assert fixed.value == 0.3
    other = pm.FixedKLController(0.0)
    other.load_state_dict(json.loads(json.dumps(fixed.state_dict())))
    assert other.value == 0.3
