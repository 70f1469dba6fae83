"""The attention align's models run: transformers' `sdpa`, with two measures for the CPU.

- Short passes take torch's math kernel. On the CPU the flash kernel's backward is slow at short lengths:
  forward + backward of bf16 attention over 8 rows x 9 heads took 15.1 ms at 80 keys with the flash kernel and
  6.7 ms with the math kernel, 20.7 and 15.0 ms at 128 keys, while at 192 keys and more flash wins (25.1 vs
  29.2 ms). Both kernels are equally close to an fp64 reference in bf16 (the math kernel computes its softmax
  in fp32). PPO's update passes are this short (prompt + answer ~90 tokens in bench/cpu.py: there the flash
  backward was 16% of an update), and so are prefix sharing's blocks of short conversations. Passes without
  gradients take the same kernel (forward alone, math is ~2 ms slower a call at 16 x 88 tokens, faster for a
  decoding step): a policy and its reference, PPO's old and new log-probs, must come out of the same arithmetic,
  so that the reference equals the policy before any update and PPO's first ratio is 1. `pinned` holds the
  choice for passes over parts of one batch (PPO's micro-batches, cut to the columns their rows fill).
- Prefix sharing (prefix_sharing.py) and SFT's packed rows (sft.py) hand the layout of their rows down as a
  keyword (`BLOCKS`): attention then runs block by block, a prefix (or a packed example) causally on itself,
  each suffix on [prefix; itself]. Its suffix blocks (an explicit mask) decide by keys like the rest: the math
  kernel on them up to 120k rows x queries x keys, faster alone (one row, 400 keys, 133 queries: 3.1 vs 3.3 ms
  forward + backward), made a whole RM step on 16 HH pairs at 512 tokens slower (12.6 vs 11.7 s, AMX, 2026-12-06).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

BLOCKS = "align_prefix_blocks"  # the keyword that carries prefix sharing's layout to the attention function
SHORT_KEYS = 128  # at most this many keys: the math kernel (measured above)
_pinned: int | None = None  # the key count `kernel` decides by inside `pinned`

_transformers_sdpa = None  # transformers' own sdpa attention, which `sdpa` runs where it is not handed a layout


def install() -> None:
    """Register `sdpa` as transformers' "sdpa" attention (once; every model loaded with SDPA then runs it)."""
    global _transformers_sdpa
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if _transformers_sdpa is None:
        _transformers_sdpa = sdpa_attention_forward
        AttentionInterface.register("sdpa", sdpa)


def kernel(query: torch.Tensor, key: torch.Tensor):
    """The SDPA kernel choice for one call: the math kernel for a short pass on a CPU."""
    keys = key.shape[-2] if _pinned is None else _pinned
    if query.device.type == "cpu" and keys <= SHORT_KEYS:
        return sdpa_kernel(SDPBackend.MATH)
    return contextlib.nullcontext()


@contextlib.contextmanager
def pinned(keys: int):
    """Every attention call inside decides as if it had `keys` keys: passes over parts of a batch (fewer
    columns) take the kernel the whole batch took."""
    global _pinned
    outer, _pinned = _pinned, keys
    try:
        yield
    finally:
        _pinned = outer


def sdpa(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None, **kwargs):
    """transformers' `sdpa` attention (query/key/value: [rows, heads, width, head dim]), on the kernel `kernel`
    picks, block by block where the forward carries a layout (`BLOCKS`)."""
    blocks = kwargs.pop(BLOCKS, None)
    if blocks is not None:
        return _blocks(module, query, key, value, blocks, dropout, scaling)
    with kernel(query, key):
        return _transformers_sdpa(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                  **kwargs)


def _blocks(module, query, key, value, blocks, dropout: float, scaling: float | None):
    """A row's blocks are (start, end, prefix start, prefix end): the tokens [start, end) attend causally to
    themselves after the prefix's, which they all see (an empty prefix for a prefix's own block).
    -> ([rows, width, heads, head dim], None), padding zero.

    Each row is cut into its blocks once (`split`): in the backward pass a split's gradient is one
    concatenation, where a slice per block would allocate and add a zero-filled gradient of the whole tensor
    per block (12,720 slice backwards, ~11% of an RM step on 32 HH rows at 512 tokens, before)."""
    from transformers.integrations.sdpa_attention import repeat_kv

    rep = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, rep), repeat_kv(value, rep)
    width, rows = query.shape[2], []
    for q_row, k_row, v_row, row in zip(query.split(1), key.split(1), value.split(1), blocks):
        end = row[-1][1] if row else 0
        sizes = [b - a for a, b, _, _ in row] + [width - end] * (end < width)
        qs, ks, vs = (t.split(sizes, 2) for t in (q_row, k_row, v_row))
        at = {a: i for i, (a, *_) in enumerate(row)}  # a block's start -> its part (a prefix is one block)
        parts = []
        for i, (a, b, p, q) in enumerate(row):
            if p == q:
                with kernel(query, ks[i]):
                    part = F.scaled_dot_product_attention(qs[i], ks[i], vs[i], dropout_p=dropout, scale=scaling,
                                                          is_causal=True)
            else:
                k, v = torch.cat([ks[at[p]], ks[i]], 2), torch.cat([vs[at[p]], vs[i]], 2)
                mask = torch.ones(b - a, q - p + b - a, dtype=torch.bool, device=query.device).tril(q - p)
                with kernel(query, k):
                    part = F.scaled_dot_product_attention(qs[i], k, v, attn_mask=mask, dropout_p=dropout,
                                                          scale=scaling)
            parts.append(part)
        if end < width:
            parts.append(query.new_zeros(1, query.shape[1], width - end, value.shape[-1]))
        rows.append(torch.cat(parts, 2))
    return torch.cat(rows).transpose(1, 2).contiguous(), None
