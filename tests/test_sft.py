"""SFT on the tiny model: it learns, it stops, it saves and reloads exactly, it hands off, it resumes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from align import chat, config, data, models, runs, sft, train
from align.cli import app

QA = [("what is the color of the sky", "blue"), ("what is the color of grass", "green"),
      ("what is the color of the sea", "blue"), ("is the cat big", "no the cat is small"),
      ("tell me about the dog", "the dog sat on the mat"), ("what is one and one", "two")]


def qa_rows(repeat: int = 8) -> list[dict]:
    return [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for q, a in QA] * repeat


def sft_cfg(model: str, data: str, out: Path, **kw) -> config.SFTConfig:
    base = dict(model=model, data=[data], output=str(out), max_steps=40, batch_size=8, learning_rate=5e-3,
                logging_steps=5, lora_r=8, lora_alpha=16, warmup_ratio=0.0)
    base.update(kw)
    return config.build(config.SFTConfig, flags=base)


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory):
    """One SFT run shared by the tests that only read its output."""
    tmp = tmp_path_factory.mktemp("sft")
    data = tmp / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in qa_rows()))
    manifest = sft.run(sft_cfg(tiny_model, str(data), tmp / "run", max_steps=60))
    return tmp / "run", manifest, str(data)


def test_loss_falls_and_manifest_records_the_run(trained, tiny_model):
    run_dir, manifest, data = trained
    m = manifest["metrics"]
    assert m["loss_end"] < 0.5 * m["loss_start"], m
    saved = runs.read_manifest(run_dir, require_complete=True)
    assert saved == json.loads(json.dumps(manifest, default=str))  # what was written is what was returned
    assert saved["stage"] == "sft" and saved["lineage"] == {"base": tiny_model, "adapters": [], "sha256": [],
                                                            "tokenizer": None, "from": None}
    assert saved["config"]["learning_rate"] == 5e-3 and saved["config"]["data"] == [data]
    assert saved["data"]["train"][0]["rows"] == len(qa_rows()) and len(saved["data"]["train"][0]["sha256"]) == 64
    assert saved["versions"]["trl"].startswith("1.16") and saved["created"] and saved["finished"]
    assert (run_dir / "adapter" / "adapter_model.safetensors").exists()
    assert not (run_dir / "checkpoints").exists()  # removed once the run is complete
    assert len((run_dir / "logs.jsonl").read_text().splitlines()) >= 5


def test_model_answers_and_stops_at_end_of_turn(trained):
    model, tok, _ = models.load_run(str(trained[0]))
    eot = chat.end_of_turn_id(tok)
    prompt = chat.prompt_text(tok, [{"role": "user", "content": QA[0][0]}])
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**ids, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=tok.pad_token_id)
    new = out[0, ids["input_ids"].shape[1]:].tolist()
    assert eot in new, tok.decode(new)  # it learned to stop ...
    assert tok.decode(new[: new.index(eot)]).strip() == "blue"  # ... right after the answer


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_merged_equals_unmerged(trained, tiny_model, dtype):
    """Merging changes nothing. bf16 tolerance: merging rounds W + BA to bf16 (8-bit mantissa), where the
    unmerged adapter adds its own product to the base's output: the mean difference must stay under 1/10 of
    what the adapter changes (fp32: 1e-4 absolute)."""
    run_dir = trained[0]
    reloaded, tok, _ = models.load_run(str(run_dir), merge=False, dtype=dtype)
    merged, _, _ = models.load_run(str(run_dir), merge=True, dtype=dtype)
    base = models.load_base(tiny_model, dtype=dtype)
    ids = tok("the cat sat on the mat", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a, b, c = reloaded(ids).logits.float(), merged(ids).logits.float(), base(ids).logits.float()
    if dtype == "fp32":
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(a, c, atol=1e-3)  # the adapter really changes the model
    else:
        assert (a - b).abs().mean() < 0.1 * (a - c).abs().mean()


def test_in_process_model_equals_reloaded(tiny_model, tmp_path, jsonl):
    """The weights written are exactly the weights trained (compare the live model with the reload)."""
    data = jsonl("qa.jsonl", qa_rows(2))
    cfg = sft_cfg(tiny_model, data, tmp_path / "run", max_steps=4)
    captured = {}
    original = train.save_model

    def spy(model, tokenizer, run, full):
        captured["model"] = model
        original(model, tokenizer, run, full)

    train.save_model, saved = spy, original
    try:
        sft.run(cfg)
    finally:
        train.save_model = saved
    live = captured["model"].eval()
    reloaded, tok, _ = models.load_run(str(tmp_path / "run"), merge=False)
    ids = tok("hello world", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(live(ids).logits.float(), reloaded(ids).logits.float(), rtol=0, atol=0)


def test_from_resolves_lineage_and_starts_from_the_sft_model(trained, tmp_path, jsonl, tiny_model):
    run_dir = trained[0]
    data = jsonl("more.jsonl", qa_rows(1))
    cfg = sft_cfg(None, data, tmp_path / "second", from_run=str(run_dir), max_steps=2, learning_rate=1e-9)
    manifest = sft.run(cfg)
    assert manifest["lineage"]["base"] == tiny_model
    assert manifest["lineage"]["adapters"] == [str(run_dir.resolve() / "adapter")]
    # a near-zero learning rate keeps the second model equal to the first: the SFT adapter was merged in
    first, tok, _ = models.load_run(str(run_dir))
    second, _, _ = models.load_run(str(tmp_path / "second"))
    ids = tok("what is the color of the sky", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(first(ids).logits, second(ids).logits, rtol=1e-3, atol=1e-3)


def test_resume_continues_exactly(tiny_model, tmp_path, jsonl, monkeypatch):
    data = jsonl("qa.jsonl", qa_rows(4))
    common = dict(max_steps=8, save_steps=4, batch_size=4, packing=False)
    sft.run(sft_cfg(tiny_model, data, tmp_path / "straight", **common))

    class Crash(Exception):
        pass

    from transformers import TrainerCallback

    class CrashAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 6:
                raise Crash()

    real = train.use_our_callbacks
    monkeypatch.setattr(train, "use_our_callbacks", lambda tr, run: (real(tr, run), tr.add_callback(CrashAt())))
    with pytest.raises(Crash):
        sft.run(sft_cfg(tiny_model, data, tmp_path / "resumed", **common))
    interrupted = runs.read_manifest(tmp_path / "resumed")
    assert interrupted["status"] == "interrupted"
    assert (tmp_path / "resumed" / "checkpoints" / "checkpoint-4").exists()
    with pytest.raises(runs.RunError, match="not complete"):
        runs.read_manifest(tmp_path / "resumed", require_complete=True)

    at_4 = json.loads((tmp_path / "resumed" / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    monkeypatch.setattr(train, "use_our_callbacks", real)
    metrics = sft.run(sft_cfg(tiny_model, data, tmp_path / "resumed", resume=True, **common))["metrics"]
    straight = runs.read_manifest(tmp_path / "straight")["metrics"]
    assert metrics["tokens"] == straight["tokens"]  # the whole run's, and its speed is the resumed part's own:
    assert metrics["tokens_per_s"] == pytest.approx((metrics["tokens"] - at_4["num_input_tokens_seen"]) /
                                                    metrics["train_runtime"])
    from safetensors.torch import load_file

    a = load_file(tmp_path / "straight" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "resumed" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    steps = [json.loads(x)["step"] for x in (tmp_path / "resumed" / "logs.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(steps) == len(set(steps))  # the redone steps are logged once


def test_existing_run_is_not_overwritten(trained, tmp_path, jsonl, tiny_model):
    run_dir, _, data = trained
    before = (run_dir / "align.json").read_text()
    result = CliRunner().invoke(app, ["sft", "--model", tiny_model, "--data", data, "--output", str(run_dir)])
    assert result.exit_code == 2
    assert "already exists; pass --overwrite" in result.output
    assert (run_dir / "align.json").read_text() == before


def test_packed_rows_do_not_attend_across_examples(tiny_model):
    """Packing is only correct if examples in one row cannot see each other (fp32: same sums, same results)."""
    model = models.load_base(tiny_model, dtype="fp32").eval()
    tok = models.load_tokenizer(tiny_model)
    a = tok("the cat sat on the mat", return_tensors="pt")["input_ids"]
    b = tok("what is the color of the sky", return_tensors="pt")["input_ids"]
    packed = torch.cat([a, b], dim=1)
    pos = torch.cat([torch.arange(a.shape[1]), torch.arange(b.shape[1])])[None]
    with torch.no_grad():
        together = model(packed, position_ids=pos, use_cache=False).logits  # as in training (TRL turns the cache off)
        alone = model(b).logits
    torch.testing.assert_close(together[:, a.shape[1]:], alone, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("flag", ["full", "load_in_4bit"])
def test_full_and_4bit_variants_train(flag, tiny_model, tmp_path, jsonl):
    pytest.importorskip("bitsandbytes") if flag == "load_in_4bit" else None
    data = jsonl("qa.jsonl", qa_rows(2))
    manifest = sft.run(sft_cfg(tiny_model, data, tmp_path / flag, max_steps=12, **{flag: True},
                               learning_rate=1e-3 if flag == "full" else 5e-3))
    assert manifest["metrics"]["loss_end"] < manifest["metrics"]["loss_start"]
    assert (tmp_path / flag / ("model" if flag == "full" else "adapter")).exists()
    model, _, _ = models.load_run(str(tmp_path / flag))  # reloads for inference
    assert model is not None


def test_model_without_chat_template_gets_the_default(tiny_base_model, tmp_path, jsonl):
    tok = models.load_tokenizer(tiny_base_model)
    assert tok.chat_template == chat.DEFAULT_CHAT_TEMPLATE
    assert chat.end_of_turn_id(tok) == tok.eos_token_id
    enc = chat.encode_chat(tok, qa_rows(1)[0]["messages"], 100)
    loss_ids = [t for t, m in zip(enc.input_ids, enc.loss_mask) if m]
    assert loss_ids[-1] == tok.eos_token_id and tok.decode(loss_ids).startswith("blue")
    manifest = sft.run(sft_cfg(tiny_base_model, jsonl("qa.jsonl", qa_rows(1)), tmp_path / "run", max_steps=2))
    saved = models.load_tokenizer(str(tmp_path / "run" / "tokenizer"))
    assert saved.chat_template == chat.DEFAULT_CHAT_TEMPLATE  # later stages see the same template
    assert manifest["template_hash"] == chat.template_hash(saved)


def test_4bit_from_a_lora_run_quantises_the_merged_model(trained, tmp_path, jsonl):
    pytest.importorskip("bitsandbytes")
    run_dir = trained[0]
    data = jsonl("qa.jsonl", qa_rows(1))
    manifest = sft.run(sft_cfg(None, data, tmp_path / "q", from_run=str(run_dir), load_in_4bit=True, max_steps=2))
    merged = list((models.cache_root() / "merged").iterdir())
    assert len(merged) == 1 and (merged[0] / "config.json").exists()  # written once, keyed by the lineage
    assert manifest["lineage"]["adapters"] == [str(run_dir.resolve() / "adapter")]
    # the quantised merged model answers like the SFT model it came from
    from align import infer

    model, tok, _ = models.load_run(str(tmp_path / "q"))
    assert infer.generate(model, tok, [[{"role": "user", "content": QA[0][0]}]], max_new_tokens=6) == ["blue"]


def test_micro_batching_splits_a_step_into_equal_passes_within_the_token_budget(tiny_model):
    cfg = config.build(config.SFTConfig, flags=dict(model=tiny_model, data=["x.jsonl"], batch_size=8, grad_accum=2))
    assert train.micro_batching(cfg, 1024, 8192) == (8, 2)  # fits: one pass per step
    assert train.micro_batching(cfg, 2048, 8192) == (4, 4)  # 8 x 2048 tokens: two passes, same 16 per step
    assert train.micro_batching(cfg, 3000, 8192) == (2, 8)  # 2 per pass (8192 // 3000), a divisor of 8
    assert train.micro_batching(cfg, 9000, 8192) == (1, 16)
    assert train.micro_batching(cfg, 2048, 0) == (8, 2)  # 0: no limit


def test_auto_micro_batch_tokens_follow_free_memory(tiny_model, monkeypatch):
    model = models.load_base(tiny_model)
    cfg = config.build(config.SFTConfig, flags=dict(model=tiny_model, data=["x.jsonl"]))
    assert cfg.micro_batch_tokens == -1  # auto by default
    per_token = train.bytes_per_token(model, models.compute_dtype(cfg.dtype), False, True)
    sizes = {}
    for mib in (64, 256):
        monkeypatch.setattr(train, "free_memory", lambda device, mib=mib: mib << 20)
        sizes[mib] = train.micro_batch_tokens(cfg, model, lm_head=True)
        # the largest power of two whose activations fit in half the free memory
        assert sizes[mib] * per_token <= (mib << 20) / 2 < 2 * sizes[mib] * per_token, (mib, sizes[mib], per_token)
    assert sizes[256] == 4 * sizes[64]
    assert train.bytes_per_token(model, torch.float32, True, False) < train.bytes_per_token(model, torch.float32, False, False)
    cfg.micro_batch_tokens = 3000
    assert train.micro_batch_tokens(cfg, model, lm_head=True) == 3000


@pytest.mark.skipif(models.keep_freed_memory() is None, reason="glibc's heap only")
def test_free_memory_counts_what_this_process_freed():
    """The heap glibc keeps for reuse (models.keep_freed_memory: freed space under its 1 GiB trim threshold stays,
    wherever it lies in the heap) is handed back before free memory is measured: a freed 512 MiB block leaves the
    process's resident memory only then, and free_memory sees it again."""
    def resident() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    train.free_memory(torch.device("cpu"))  # what earlier tests freed is handed back first
    block = torch.ones(2 ** 27)  # 512 MiB, touched
    before = resident()
    del block
    assert resident() > before - (128 << 20)  # freed, still held
    train.free_memory(torch.device("cpu"))
    assert resident() < before - (384 << 20)  # handed back


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_head_loss_equals_the_plain_one(dtype):
    """LinearCrossEntropy, chunk by chunk: the loss and the hidden states' gradient of the plain head + fp32
    cross-entropy (the gradient is scaled after the matmul instead of before: a last-bit difference)."""
    torch.manual_seed(0)
    hidden = torch.randn(600, 64, dtype=dtype, requires_grad=True)
    weight = torch.randn(1000, 64, dtype=dtype) / 8
    target = torch.randint(0, 1000, (600,))
    plain = torch.nn.functional.cross_entropy((hidden @ weight.T).float(), target, reduction="sum")
    (want,) = torch.autograd.grad(plain / 600, hidden)
    fused = sft.LinearCrossEntropy.apply(hidden, weight, target, 256)  # 3 chunks, the last one short
    (got,) = torch.autograd.grad(fused / 600, hidden)
    torch.testing.assert_close(fused, plain, rtol=1e-6, atol=0)
    tol = dict(rtol=1e-5, atol=1e-9) if dtype == torch.float32 else dict(rtol=1e-2, atol=1e-5)
    torch.testing.assert_close(got, want, **tol)


def loss_and_grads(model, inputs, dtype: str, fused: bool, blocks: bool):
    """LabelPositionsLoss on a batch, outside a Trainer: (loss, the trainable parameters' gradients)."""
    from types import SimpleNamespace

    trainer = SimpleNamespace(args=SimpleNamespace(average_tokens_across_devices=False), CHUNK=7, fused=fused,
                              head_dtype=models.compute_dtype(dtype), blocks=blocks)
    model.zero_grad()
    loss = sft.LabelPositionsLoss.compute_loss(trainer, model, inputs)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_sft_loss_is_the_same_through_the_fused_head(tiny_model, dtype):
    """LabelPositionsLoss with the fused head and with the model's own head on the label positions: the same
    loss and the same LoRA gradients, on a packed batch (the head's weight is tied to the embeddings)."""
    tok = models.load_tokenizer(tiny_model)
    cfg = sft_cfg(tiny_model, "x.jsonl", Path("unused"), dtype=dtype, lora_dropout=0.0)
    model = models.prepare(cfg, "causal", {"base": tiny_model, "adapters": []}, tok)
    loaded = data.Loaded(rows=[data.Row("qa", i, r) for i, r in enumerate(qa_rows(1))])
    rows = sft.pack(sft.encode_rows(loaded, tok, cfg), 40)
    inputs = sft.collate(tok.pad_token_id, rows)
    assert sft.fusable(model)  # the tied, frozen head of a LoRA run
    results = {fused: loss_and_grads(model, inputs, dtype, fused, blocks=False) for fused in (True, False)}
    torch.testing.assert_close(results[True][0], results[False][0], rtol=1e-6, atol=0)
    tol = dict(rtol=1e-4, atol=1e-6) if dtype == "fp32" else dict(rtol=2e-2, atol=1e-4)
    for a, b in zip(results[True][1], results[False][1]):
        torch.testing.assert_close(a, b, **tol)


def test_a_head_whose_logits_the_model_changes_is_not_fused(tiny_model):
    """Gemma caps its logits after the head, Cohere scales them: the fused loss would then not be the model's."""
    tok = models.load_tokenizer(tiny_model)
    model = models.prepare(sft_cfg(tiny_model, "x.jsonl", Path("unused")), "causal",
                           {"base": tiny_model, "adapters": []}, tok)
    assert sft.fusable(model)

    def scale(_module, _args, out):
        out["logits"] = out.logits * 0.0625  # Cohere's logit_scale
        return out

    hook = models.unwrap(model).register_forward_hook(scale)
    assert not sft.fusable(model)
    hook.remove()
    models.unwrap(model).lm_head.weight.requires_grad_(True)  # a head that trains
    assert not sft.fusable(model)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_packed_attention_example_by_example_equals_the_row_mask(tiny_model, dtype, monkeypatch):
    """On a CPU packed rows attend example by example (attention.py's blocks) instead of through the row's
    block-diagonal mask: the same loss and LoRA gradients, and the blocks are what ran."""
    from align import attention

    tok = models.load_tokenizer(tiny_model)
    cfg = sft_cfg(tiny_model, "x.jsonl", Path("unused"), dtype=dtype, lora_dropout=0.0)
    model = models.prepare(cfg, "causal", {"base": tiny_model, "adapters": []}, tok)
    torch.manual_seed(0)
    with torch.no_grad():  # a trained-looking adapter, so that every LoRA weight has a gradient
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    loaded = data.Loaded(rows=[data.Row("qa", i, r) for i, r in enumerate(qa_rows(1))])
    inputs = sft.collate(tok.pad_token_id, sft.pack(sft.encode_rows(loaded, tok, cfg), 100))
    blocks = sft.example_blocks(inputs["position_ids"])
    assert max(map(len, blocks)) > 1 and all(row[-1][1] == inputs["input_ids"].shape[1] for row in blocks)
    attention.install()
    ran = []
    monkeypatch.setattr(attention, "_blocks", lambda *a, _run=attention._blocks: ran.append(1) or _run(*a))
    results = {}
    for by_example in (True, False):
        results[by_example] = loss_and_grads(model, inputs, dtype, fused=True, blocks=by_example)
        assert bool(ran) == by_example
        ran.clear()
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == "fp32" else dict(rtol=2e-2, atol=1e-3)
    torch.testing.assert_close(results[True][0], results[False][0], **tol)
    for a, b in zip(results[True][1], results[False][1]):
        torch.testing.assert_close(a, b, **tol)
