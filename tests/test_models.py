"""LoRA layers add their update inside one GEMM (models.fuse_lora_adds): the same model as peft's forward."""

import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora.layer import Linear

from align import models


def lora_model(tiny_model: str, dtype: str):
    torch.manual_seed(0)
    model = get_peft_model(models.load_base(tiny_model, "causal", dtype=dtype),
                           LoraConfig(r=4, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    for name, p in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero: the update would be zero and the test blind
            p.data.normal_(0, 0.05)
    models.upcast_trainable(model)
    models.run_in(model, models.compute_dtype(dtype))
    return model


def forward_backward(model, ids: torch.Tensor, fused: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    layers = [m for m in model.modules() if isinstance(m, Linear)]
    classes = [type(m) for m in layers]
    try:
        if not fused:  # peft's own forward
            for m in layers:
                m.__class__ = Linear
        model.zero_grad()
        logits = model(input_ids=ids).logits.float()
        logits.square().mean().backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]
    finally:
        for m, c in zip(layers, classes):
            m.__class__ = c


def test_fused_lora_adds_compute_what_peft_computes(tiny_model):
    model = lora_model(tiny_model, "fp32")
    assert sum(type(m) is models._fused_lora_linear() for m in model.modules()) >= 7
    ids = torch.randint(3, 200, (3, 17))
    (ours, ours_grads), (peft, peft_grads) = (forward_backward(model, ids, fused) for fused in (True, False))
    assert torch.allclose(ours, peft, atol=1e-5 * peft.abs().max())
    for a, b in zip(ours_grads, peft_grads):
        assert (a - b).norm() <= 1e-5 * b.norm(), (a - b).norm() / b.norm()
    with torch.no_grad(), model.disable_adapter():  # adapters off: the base alone, through peft's path
        base = model(input_ids=ids).logits.float()
    assert not torch.allclose(base, ours, atol=1e-3)


def test_in_bf16_the_fused_adds_are_as_close_to_fp32_as_peft(tiny_model):
    """bf16 rounds differently (peft three times a layer, one GEMM once): measured against fp32 arithmetic on
    the same weights, ours is no further off than peft's."""
    ids = torch.randint(3, 200, (3, 17))
    exact, exact_grads = forward_backward(lora_model(tiny_model, "fp32"), ids, fused=False)
    model = lora_model(tiny_model, "bf16")
    for fused in (True, False):
        logits, grads = forward_backward(model, ids, fused)
        err = max(float((a - b.to(a)).norm() / b.norm()) for a, b in zip(grads, exact_grads))
        if fused:
            ours, ours_err = (logits - exact).abs().max(), err
    assert ours <= 1.25 * (logits - exact).abs().max() and ours_err <= 1.25 * err, (ours_err, err)
    assert 0 < ours_err < 0.5  # both really ran in bf16 (the base's weights rounded too: ~0.13 here)


def test_peft_runs_what_cannot_be_fused(tiny_model, monkeypatch):
    """ZeRO-3 gathers a layer's weights only inside its own submodules' forwards (`ds_id` marks them): read
    directly, they would be empty. Such layers, and adapters switched off, take peft's path."""
    model = lora_model(tiny_model, "fp32")
    ids = torch.randint(3, 200, (2, 9))
    calls = []
    addmm = torch.addmm
    monkeypatch.setattr(torch, "addmm", lambda *a, **k: calls.append(1) or addmm(*a, **k))
    with torch.no_grad():
        fused = model(input_ids=ids).logits
        assert calls
        calls.clear()
        with model.disable_adapter():
            model(input_ids=ids)
        assert not calls
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.ds_id = 0
        assert torch.allclose(model(input_ids=ids).logits, fused, atol=1e-5) and not calls
