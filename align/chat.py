"""Chat templating and tokenisation: the one place that turns messages into token ids and loss masks.

Every stage (and `align data inspect`) goes through here, so what inspect shows is what training sees.
We tokenise the rendered text once with character offsets and mark as "loss" every token that lies in an
assistant turn's span (its end-of-turn token included). Labels come from that mask, never from
`pad_token_id`, so a model whose pad token equals its EOS (SmolLM2) still learns to stop.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from align.errors import ConfigError, ModelError

# Used when a tokenizer has no chat template (base models). Plain-text roles, and the tokenizer's EOS
# token ends each assistant turn, so generation stops there. Documented in the README.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '### ' + message['role'] | capitalize + ':\n' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\n\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Assistant:\n' }}{% endif %}"
)


def ensure_chat_template(tokenizer) -> bool:
    """Give a tokenizer without a chat template our default one, and a pad token. True if a template was added."""
    if tokenizer.pad_token is None:
        # Safe: labels are built from the loss mask and padding is masked by the attention mask,
        # so the EOS token keeps its loss even though it doubles as padding.
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(tokenizer, "chat_template", None):
        return False
    tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    return True


def render(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def template_hash(tokenizer) -> str:
    return hashlib.sha256((tokenizer.chat_template or "").encode()).hexdigest()[:16]


def tokenizer_hash(tokenizer) -> str:
    vocab = sorted(tokenizer.get_vocab().items())
    special = [tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token]
    return hashlib.sha256(repr((vocab, special)).encode()).hexdigest()[:16]


def end_of_turn_id(tokenizer) -> int:
    """The token that closes an assistant turn: what generation stops on and what SFT must teach."""
    probe = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "PROBE"}]
    text = render(tokenizer, probe)
    tail = text[text.rindex("PROBE") + len("PROBE"):]
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    for tid in tokenizer(tail, add_special_tokens=False)["input_ids"]:
        if tid in special:
            return tid
    if tokenizer.eos_token_id is None:
        raise ModelError("the chat template ends assistant turns with no special token and the tokenizer has no EOS")
    return tokenizer.eos_token_id


def stop_token_ids(tokenizer) -> list[int]:
    ids = [end_of_turn_id(tokenizer)]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def _bos_expected(tokenizer) -> bool:
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a", add_special_tokens=True)["input_ids"][:1] == [bos]


@dataclass
class Encoded:
    input_ids: list[int]
    loss_mask: list[int]  # 1 where the token carries loss
    truncated: bool = False

    @property
    def labels(self) -> list[int]:
        return [t if m else -100 for t, m in zip(self.input_ids, self.loss_mask)]


def encode_text(tokenizer, text: str, spans: list[tuple[int, int]] | None, max_length: int | None,
                truncate: bool) -> Encoded:
    """Tokenise `text`; tokens starting inside a span carry loss (spans=None: every token does)."""
    if max_length is not None and max_length < 1:  # a setting, not a fault of the row being encoded
        raise ConfigError(f"max_length must be a positive number of tokens, got {max_length}")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), list(enc["offset_mapping"])
    if spans is None:
        mask = [1] * len(ids)
    else:
        mask = [int(any(s <= start < e for s, e in spans)) for start, _ in offsets]
    if _bos_expected(tokenizer) and ids[:1] != [tokenizer.bos_token_id]:
        ids, mask = [tokenizer.bos_token_id] + ids, [0] + mask
    truncated = max_length is not None and len(ids) > max_length
    if truncated and truncate:
        ids, mask = ids[:max_length], mask[:max_length]
    return Encoded(ids, mask, truncated)


def assistant_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """Render a conversation; return the text and the character span of each assistant turn.

    A turn's span runs from the end of the generation prompt that precedes it to its end-of-turn token,
    so it holds exactly what the model must produce, and stop on.
    """
    text = render(tokenizer, messages)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:i], add_generation_prompt=True) if i else ""
        upto = render(tokenizer, messages[: i + 1])
        if not text.startswith(upto) or not upto.startswith(before):
            raise ModelError("the chat template does not render conversations prefix-consistently; "
                             "cannot locate assistant turns (use --no-completion-only-loss)")
        end = len(upto.rstrip())  # the newline a template puts after end-of-turn is not the model's to predict
        spans.append((len(before), end))
    return text, spans


def encode_chat(tokenizer, messages: list[dict], max_length: int | None, completion_only: bool = True,
                truncate: bool = False) -> Encoded:
    text, spans = assistant_spans(tokenizer, messages)
    return encode_text(tokenizer, text, spans if completion_only else None, max_length, truncate)


def encode_plain(tokenizer, text: str, max_length: int | None, truncate: bool = False) -> Encoded:
    """Plain-text rows: language modelling on every token, EOS appended so documents end."""
    return encode_text(tokenizer, text + (tokenizer.eos_token or ""), None, max_length, truncate)


def prompt_text(tokenizer, prompt: list[dict]) -> str:
    """The text a model continues to answer `prompt` (a list of messages)."""
    return render(tokenizer, prompt, add_generation_prompt=True)


def prompt_ids(tokenizer, prompt: list[dict]) -> list[int]:
    """The token ids a model continues to answer `prompt`: prompt_text tokenised as training tokenises it
    (a BOS added where the tokenizer expects one and the template has none)."""
    return encode_text(tokenizer, prompt_text(tokenizer, prompt), None, None, False).input_ids


def encode_conversation(tokenizer, prompt: list[dict], response: list[dict]) -> Encoded:
    """prompt + response with the template, ending exactly at the response's end-of-turn token; the loss
    mask marks the last response turn (what the model produced), so callers can tell its length.

    Reward models read their score at the last token, so it must be the end-of-turn token, never padding
    or the template's trailing newline.
    """
    text, spans = assistant_spans(tokenizer, prompt + response)
    return encode_text(tokenizer, text[: spans[-1][1]], spans[-1:], None, False)


def conversation_ids(tokenizer, prompt: list[dict], response: list[dict]) -> list[int]:
    return encode_conversation(tokenizer, prompt, response).input_ids


def count_long_prompts(tokenizer, prompts: list[list[dict]], max_length: int) -> int:
    """How many prompts (with their generation prompt) are over `max_length` tokens: PPO keeps their last
    tokens, and the count is reported like the other stages' truncation counts."""
    return sum(len(prompt_ids(tokenizer, p)) > max_length for p in prompts)


def truncate_left(tokenizer, ids: list[int], max_length: int | None) -> list[int]:
    """Keep the last `max_length` tokens (the end of the conversation; None: all); a leading BOS token stays."""
    if max_length is None or len(ids) <= max_length:
        return ids
    head = ids[:1] if tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id else []
    return head + ids[len(ids) - max_length + len(head):]
