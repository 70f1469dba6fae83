"""align's SDPA attention: short passes on a CPU take the math kernel, and give what the default kernel gives
(outputs and gradients), so the choice is a matter of speed only."""

from __future__ import annotations

import torch

from align import attention, models


def _flash_allowed() -> bool:
    return torch.backends.cuda.flash_sdp_enabled()  # the global switch sdpa_kernel sets, on every device


def test_the_math_kernel_for_short_passes_with_or_without_gradients_and_pinned_for_a_batch():
    q = torch.zeros(1, 2, 8, 4, requires_grad=True)
    short, long = torch.zeros(1, 2, attention.SHORT_KEYS, 4), torch.zeros(1, 2, attention.SHORT_KEYS + 1, 4)
    with attention.kernel(q, short):
        assert not _flash_allowed()
    assert _flash_allowed()
    with torch.no_grad(), attention.kernel(q.detach(), short):  # a reference's pass: the same kernel
        assert not _flash_allowed()
    with attention.kernel(q, long):
        assert _flash_allowed()
    with attention.pinned(attention.SHORT_KEYS + 1):  # part of a long batch: the long batch's kernel
        with attention.kernel(q, short):
            assert _flash_allowed()
    with attention.kernel(q, short):
        assert not _flash_allowed()


def test_the_kernel_choice_changes_no_logit_or_gradient(tiny_model, monkeypatch):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(models.load_base(tiny_model, "causal", dtype="fp32"),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    ids = torch.randint(3, 100, (3, 12))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # a left-padded row, as PPO's batches have

    def step(short_keys: int):
        monkeypatch.setattr(attention, "SHORT_KEYS", short_keys)
        model.zero_grad()
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        logits[mask.bool()].log_softmax(-1)[:, 5].sum().backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    short, calls = attention.SHORT_KEYS, []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(_flash_allowed()) or sdpa(*a, **k))
    default_logits, default_grads = step(0)
    math_logits, math_grads = step(short)
    assert calls and all(calls[:len(calls) // 2]) and not any(calls[len(calls) // 2:])  # each kernel ran
    real = mask.bool()
    torch.testing.assert_close(math_logits[real], default_logits[real], rtol=1e-5, atol=1e-5)
    for a, b in zip(math_grads, default_grads):  # fp32 in another summation order: an error relative to the
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())  # tensor's scale
