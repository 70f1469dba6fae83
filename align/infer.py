"""Using a trained model: batched generation with the chat template, and merging adapters into a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from align import chat, data, models, runs
from align.errors import RunError

# A generation batch: at most GENERATE_ROWS rows (a CPU decoding step costs little more at 64 rows than at 32,
# the weights are read once a step either way: 100 HH prompts cut to 256 tokens, 48 new tokens, bf16, 32 rows
# 49-58 s, 50 rows 42 s) and GENERATE_TOKENS padded prompt tokens (the prefill runs every row at the longest one's
# length: HH prompts of 40-1,700 tokens in rows of 32 were 60k tokens for 36k of prompt)
GENERATE_ROWS = 64
GENERATE_TOKENS = 16384


def load_any(spec: str, trust_remote_code: bool = False, kind: str | None = None):
    """A run directory or a plain model spec -> (model, tokenizer) ready for inference."""
    if (Path(spec) / runs.MANIFEST).exists():
        model, tok, _ = models.load_run(spec, kind, trust_remote_code=trust_remote_code)
        return model, tok
    path = models.resolve(spec)
    tok = models.load_tokenizer(path, trust_remote_code)
    model = models.load_base(path, kind or "causal", trust_remote_code=trust_remote_code)
    model.eval()
    return model, tok


def length_batches(lengths: list[int], max_tokens: int = 0, max_rows: int = 0,
                   rows: list[int] | None = None) -> list[list[int]]:
    """Indices of items of these lengths, shortest first, cut into batches of at most `max_tokens` padded
    tokens (rows x the longest) and `max_rows` rows (0: no limit). Items of similar length go together, so
    little is spent on padding; an item over `max_tokens` alone makes its own batch. An item may hold several
    rows (`rows`, default 1 each: a group of sequences kept together, `lengths` its longest)."""
    out: list[list[int]] = []
    held = 0  # rows in the current batch
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        n = rows[i] if rows else 1
        full = (max_rows and held + n > max_rows) or (max_tokens and lengths[i] * (held + n) > max_tokens)
        if not out or full:
            out.append([i])
            held = n
        else:
            out[-1].append(i)
            held += n
    return out


def encode_prompts(tokenizer, prompts: list[list[dict]], max_length: int | None = None) -> dict[str, torch.Tensor]:
    """Prompts (message lists) -> left-padded ids with their generation prompt, as `generate` takes them; over
    `max_length` a prompt keeps its last tokens (chat.truncate_left: a leading BOS stays)."""
    return pad_left(prompt_rows(tokenizer, prompts, max_length), tokenizer.pad_token_id)


def prompt_rows(tokenizer, prompts: list[list[dict]], max_length: int | None = None) -> list[list[int]]:
    """Each prompt's ids with the generation prompt; over `max_length` its last tokens (a leading BOS stays)."""
    return [chat.truncate_left(tokenizer, chat.prompt_ids(tokenizer, p), max_length) for p in prompts]


def pad_left(rows: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(map(len, rows))
    return {"input_ids": torch.tensor([[pad_id] * (width - len(r)) + r for r in rows]),
            "attention_mask": torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])}


def sampling_kwargs(temperature: float, top_p: float = 1.0, top_k: int = 0, *, stop: list[int],
                    pad_id: int) -> dict:
    """`generate` arguments: greedy at temperature 0, else sampling at that temperature with top-p and top-k
    (top_k 0: off); generation stops at any token of `stop` (chat.stop_token_ids)."""
    sample = temperature > 0
    return dict(do_sample=sample, temperature=temperature if sample else None, top_p=top_p if sample else None,
                top_k=top_k if sample else None, eos_token_id=stop, pad_token_id=pad_id)


@torch.no_grad()
def generate(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int = 128, temperature: float = 0.0,
             top_p: float = 1.0, top_k: int = 0, batch_size: int = GENERATE_ROWS, max_prompt_length: int | None = None,
             max_tokens: int = GENERATE_TOKENS) -> list[str]:
    """Answer each prompt (a list of messages), in their order; batched (prompts of similar length together,
    at most `batch_size` rows and `max_tokens` padded prompt tokens a batch), left-padded, KV-cached, stopping
    at end-of-turn. Over `max_prompt_length` a prompt keeps its last tokens (chat.truncate_left)."""
    device = next(model.parameters()).device
    kwargs = sampling_kwargs(temperature, top_p, top_k, stop=chat.stop_token_ids(tokenizer),
                             pad_id=tokenizer.pad_token_id)
    rows = prompt_rows(tokenizer, prompts, max_prompt_length)
    out: list[str] = [""] * len(prompts)
    for idx in length_batches([len(r) for r in rows], max_tokens, batch_size):
        enc = {k: t.to(device) for k, t in pad_left([rows[i] for i in idx], tokenizer.pad_token_id).items()}
        gen = model.generate(**enc, max_new_tokens=max_new_tokens, **kwargs)
        for i, row in zip(idx, gen[:, enc["input_ids"].shape[1]:]):
            out[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
    return out


def generate_cli(spec: str, prompt: list[str], prompts_file, max_new_tokens: int, temperature: float, top_p: float,
                 batch_size: int, output, trust_remote_code: bool, overwrite: bool = False) -> None:
    output = runs.check_output_file(output, overwrite) if output else None
    msgs = [[{"role": "user", "content": p}] for p in prompt]
    if prompts_file:
        msgs += [v["prompt"] for v in data.load_prompts(str(prompts_file)).values()]
    if not msgs:
        raise RunError("nothing to answer: pass --prompt TEXT or --prompts FILE")
    model, tok = load_any(spec, trust_remote_code)
    answers = generate(model, tok, msgs, max_new_tokens, temperature, top_p, batch_size=batch_size)
    lines = [{"prompt": m[-1]["content"], "response": a} for m, a in zip(msgs, answers)]
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        runs.write_text_atomic(output, "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
        print(f"wrote {len(lines)} responses to {output}")
    else:
        for x in lines:
            print(f">>> {x['prompt']}\n{x['response']}\n")


def merge(run_dir: str, output: str, overwrite: bool = False, dtype: str = "auto") -> None:
    """Write base + all adapters merged as a standalone safetensors checkpoint (written aside, then renamed)."""
    # --overwrite replaces only a checkpoint this command wrote (it holds runs.MERGED_MARKER); the old one is
    # deleted only once the new one is in place (atomic_dir)
    out = runs.check_replaceable(output, overwrite, runs.MERGED_MARKER, "merged checkpoint")
    model, tok, manifest = models.load_run(run_dir, dtype=dtype)
    with runs.atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        runs.write_json_atomic(tmp / runs.MERGED_MARKER, {"align_merged": 1, "from": str(Path(run_dir).resolve()),
                                                          "stage": manifest["stage"], "created": runs.now()})
    print(f"merged {manifest['stage']} run {run_dir} -> {output}")


@torch.no_grad()
def chat_loop(spec: str, max_new_tokens: int = 256, temperature: float = 0.7, trust_remote_code: bool = False,
              read=input) -> list[dict]:
    """An interactive chat in the terminal: the chat template applied, the answer streamed as it is made.

    /reset forgets the conversation, /exit (or Ctrl-D) leaves. Returns the conversation.
    """
    from transformers import TextStreamer

    model, tok = load_any(spec, trust_remote_code)
    device = next(model.parameters()).device
    kwargs = sampling_kwargs(temperature, stop=chat.stop_token_ids(tok), pad_id=tok.pad_token_id)
    history: list[dict] = []
    print("chat with", spec, "(/reset to start over, /exit to leave)")
    while True:
        try:
            line = read("you> ").strip()
        except EOFError:
            break
        if line in ("/exit", "/quit"):
            break
        if line == "/reset":
            history = []
            continue
        if not line:
            continue
        history.append({"role": "user", "content": line})
        enc = {k: t.to(device) for k, t in encode_prompts(tok, [history]).items()}
        print("assistant> ", end="", flush=True)
        out = model.generate(**enc, max_new_tokens=max_new_tokens, **kwargs,
                             streamer=TextStreamer(tok, skip_prompt=True, skip_special_tokens=True))
        answer = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
        history.append({"role": "assistant", "content": answer})
    return history
