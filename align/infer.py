"""Using a trained model: batched generation with the chat template, and merging adapters into a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from align import chat, data, models, runs
from align.errors import RunError


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


@torch.no_grad()
def generate(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int = 128, temperature: float = 0.0,
             top_p: float = 1.0, top_k: int = 0, batch_size: int = 8) -> list[str]:
    """Answer each prompt (a list of messages); batched, left-padded, KV-cached, stopping at end-of-turn."""
    old_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    device = next(model.parameters()).device
    stop = chat.stop_token_ids(tokenizer)
    out: list[str] = []
    try:
        for i in range(0, len(prompts), batch_size):
            texts = [chat.prompt_text(tokenizer, p) for p in prompts[i: i + batch_size]]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            sampling = temperature > 0
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=sampling,
                                 temperature=temperature if sampling else None, top_p=top_p if sampling else None,
                                 top_k=top_k if sampling else None, eos_token_id=stop,
                                 pad_token_id=tokenizer.pad_token_id)
            for row in gen[:, enc["input_ids"].shape[1]:]:
                out.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    finally:
        tokenizer.padding_side = old_side
    return out


def generate_cli(spec: str, prompt: list[str], prompts_file, max_new_tokens: int, temperature: float, top_p: float,
                 batch_size: int, output, trust_remote_code: bool) -> None:
    msgs = [[{"role": "user", "content": p}] for p in prompt]
    if prompts_file:
        msgs += [v["prompt"] for v in data.load_prompts(str(prompts_file)).values()]
    if not msgs:
        raise RunError("nothing to answer: pass --prompt TEXT or --prompts FILE")
    model, tok = load_any(spec, trust_remote_code)
    answers = generate(model, tok, msgs, max_new_tokens, temperature, top_p, batch_size=batch_size)
    lines = [{"prompt": m[-1]["content"], "response": a} for m, a in zip(msgs, answers)]
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
        print(f"wrote {len(lines)} responses to {output}")
    else:
        for x in lines:
            print(f">>> {x['prompt']}\n{x['response']}\n")


def merge(run_dir: str, output: str, overwrite: bool = False, dtype: str = "auto") -> None:
    """Write base + all adapters merged as a standalone safetensors checkpoint (written aside, then renamed)."""
    out = Path(output)
    # --overwrite replaces only a checkpoint this command wrote (it holds runs.MERGED_MARKER); the old one is
    # deleted only once the new one is in place (atomic_dir)
    runs.check_replaceable(out, overwrite, runs.MERGED_MARKER, "merged checkpoint")
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
        enc = tok(chat.prompt_text(tok, history), return_tensors="pt", add_special_tokens=False).to(device)
        sampling = temperature > 0
        print("assistant> ", end="", flush=True)
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=sampling,
                             temperature=temperature if sampling else None, eos_token_id=chat.stop_token_ids(tok),
                             pad_token_id=tok.pad_token_id,
                             streamer=TextStreamer(tok, skip_prompt=True, skip_special_tokens=True))
        answer = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
        history.append({"role": "assistant", "content": answer})
    return history
