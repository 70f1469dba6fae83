"""`align data inspect`: show examples exactly as training tokenises them, so template mistakes show up
before any compute is spent (no end-of-turn token in the loss, BOS twice, loss on the prompt)."""

from __future__ import annotations

from pathlib import Path

from align import chat, data, models, runs

LOSS_ON, LOSS_OFF = "\033[1;32m", "\033[0m"


def _tokenizer(spec: str, trust_remote_code: bool):
    if (Path(spec) / runs.MANIFEST).exists():
        return models.load_tokenizer(str(Path(spec) / "tokenizer"), trust_remote_code)
    return models.load_tokenizer(models.resolve(spec), trust_remote_code)


def render_marked(tokenizer, enc: chat.Encoded, color: bool) -> str:
    """The token stream as text, loss tokens wrapped in [[...]] (and green on a terminal)."""
    out, inside = [], False
    for tid, m in zip(enc.input_ids, enc.loss_mask):
        if m and not inside:
            out.append(LOSS_ON if color else "[[")
        if not m and inside:
            out.append(LOSS_OFF if color else "]]")
        inside = bool(m)
        out.append(tokenizer.decode([tid], skip_special_tokens=False))
    if inside:
        out.append(LOSS_OFF if color else "]]")
    return "".join(out)


def checks(tokenizer, enc: chat.Encoded) -> list[str]:
    """Warnings for the template mistakes users hit most."""
    warn = []
    eot = chat.end_of_turn_id(tokenizer)
    loss_ids = [t for t, m in zip(enc.input_ids, enc.loss_mask) if m]
    if loss_ids and eot not in loss_ids:
        warn.append(f"the end-of-turn token {tokenizer.convert_ids_to_tokens(eot)!r} carries no loss: "
                    "the model will not learn to stop")
    bos = tokenizer.bos_token_id
    if bos is not None and enc.input_ids[:2] == [bos, bos]:
        warn.append("BOS appears twice at the start")
    if all(enc.loss_mask):
        warn.append("every token carries loss (prompt included)")
    return warn


def inspect_sft(files: list[str], spec: str, n: int, max_length: int, completion_only: bool,
                trust_remote_code: bool, color: bool | None = None) -> str:
    import sys

    color = sys.stdout.isatty() if color is None else color
    loaded = data.load_sft(files)
    tok = _tokenizer(spec, trust_remote_code)
    eot = chat.end_of_turn_id(tok)
    lines = [f"{len(loaded.rows)} rows from {', '.join(f['path'] + ' (' + f['format'] + ')' for f in loaded.files)}",
             f"end-of-turn token: {tok.convert_ids_to_tokens(eot)!r} (id {eot}); pad token: {tok.pad_token!r}; "
             f"loss tokens shown {'in green' if color else 'as [[...]]'}", ""]
    lengths = []
    for i, row in enumerate(loaded.rows):
        v = row.value
        enc = (chat.encode_plain(tok, v["text"], max_length) if "text" in v
               else chat.encode_chat(tok, v["messages"], max_length, completion_only))
        lengths.append(len(enc.input_ids))
        if i < n:
            lines.append(f"--- {row.file} row {row.row}: {len(enc.input_ids)} tokens, {sum(enc.loss_mask)} with loss"
                         + (f", OVER max_length {max_length}" if enc.truncated else ""))
            lines.append(render_marked(tok, enc, color))
            lines += [f"WARNING: {w}" for w in checks(tok, enc)]
            lines.append("")
    over = sum(x > max_length for x in lengths)
    lines.append(f"lengths: min {min(lengths)}, mean {sum(lengths) / len(lengths):.0f}, max {max(lengths)}; "
                 f"{over} over max_length {max_length}" + (" (training refuses these unless --truncate)" if over else ""))
    text = "\n".join(lines)
    print(text)
    return text
