"""Shared fixtures: a tiny random-initialised Llama and a byte-level BPE tokenizer, both built offline here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
WORDS = ("the a cat dog sat on mat red blue green big small what is color of sky sea grass answer question yes no "
         "hello world please tell me about one two three four five six seven eight nine ten and or not good bad "
         "banana apple reward policy model train learn stop user assistant system helpful kind").split()


def build_tokenizer(out: Path, chat_template: str | None = CHATML):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))] + ["system user assistant\n"] * 5
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|im_end|>",
                                   bos_token="<|im_start|>", unk_token=None)
    if chat_template:
        fast.chat_template = chat_template
    fast.save_pretrained(out)
    return fast


def build_model(out: Path, tokenizer, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, initializer_range=0.2,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """Path of a tiny chat model (ChatML template, pad == EOS like SmolLM2).

    initializer_range 0.2: with frozen embeddings and the default 0.02, logits stay near uniform and
    LoRA alone cannot make confident predictions, so nothing could be seen to learn. No pad_token_id in the
    config: it would zero the (tied) embedding row of EOS, which doubles as pad, and EOS could not be learned.
    """
    out = tmp_path_factory.mktemp("tiny")
    build_model(out, build_tokenizer(out))
    return str(out)


@pytest.fixture(scope="session")
def tiny_base_model(tmp_path_factory) -> str:
    """A tiny model whose tokenizer has no chat template (a 'base' model)."""
    out = tmp_path_factory.mktemp("tiny_base")
    build_model(out, build_tokenizer(out, chat_template=None))
    return str(out)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGN_CACHE", os.environ.get("ALIGN_TEST_CACHE", str(tmp_path / "cache")))


def write_jsonl(path: Path, rows: list) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def jsonl(tmp_path):
    def make(name: str, rows: list) -> str:
        return write_jsonl(tmp_path / name, rows)

    return make
