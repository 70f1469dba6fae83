"""Prefix sharing: rows of a batch that begin alike run their common beginning once.

A comparison's chosen and rejected conversations share the whole prompt, and a ranking's K responses share it K
times: on HH-RLHF helpfulness the prompt is ~70% of a conversation, so a pair batch encodes ~1.5x the tokens it
needs (Wang et al. 2024, "Accelerating Direct Preference Optimization with Prefix Sharing"). Here each group of
rows is packed as one unit [common prefix][suffix 1]...[suffix k], units are packed into rows, a mask keeps every
suffix to the prefix and itself, and position ids continue the prefix in each suffix: every token sees exactly
what it sees in its own row, at the same position. The hidden states are then laid out as the padded batch.

On the CPU attention runs block by block: a prefix causally on itself, each suffix on [prefix; itself]. A dense
mask over the packed rows costs (prefix + all suffixes)^2 per unit (a row's width^2 where units share a row): the
kernel cannot skip masked blocks as it skips the upper triangle of a causal one (an RM step on 4 HH pairs at 512
tokens, rounds in rotating order: fp32 28.9 s with the dense mask, 25.1 s in blocks; bf16 6.9 s and 5.7 s, DPO
9.1 s and 8.3 s; at 256 tokens the dense mask was 12% faster: bench/prefix_sharing.py). The layout goes down the
backbone's forward as a keyword that transformers hands on to the attention function, and transformers' `sdpa`
entry is replaced by one that reads it (attention.py; SDPA itself otherwise). The dense mask is built and passed all the
same: on an accelerator (one kernel beats hundreds of small ones; not measured here) and in a model that does not
hand keywords on to its attention, attention runs on it.

The model is not told: its backbone's forward is wrapped, so everything after it (score head, TRL's fused LM
head, losses, metrics, gradients) runs as before, and results equal the unshared ones up to float rounding.
Only with SDPA attention, full attention in every layer and no router (`supported`); otherwise, and for
what it cannot take (left padding, fixed positions, a cache), the batch runs as it is.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator, Sequence

import torch

from align import attention, models
from align.attention import BLOCKS


def common_prefix(rows: Sequence[Sequence[int]]) -> int:
    first, n = rows[0], min(map(len, rows))
    return next((i for i in range(n) if any(r[i] != first[i] for r in rows[1:])), n)


def plan(ids: list[list[int]], groups: Sequence[Sequence[int]]) -> tuple[list[list[tuple[int, int, int, int]]], list[int]]:
    """Padding-free packed rows for `ids` (each row's real tokens), whose `groups` (row indices) share prefixes.

    -> (rows: per packed token (token id, position, unit, segment: 0 prefix, k suffix k),
        where: for each original token in order, its flat index in the packed rows of width max(unit)).
    Units are packed first-fit by decreasing length into rows as wide as the widest unit."""
    listed = {r for g in groups for r in g}
    groups = [list(g) for g in groups if g] + [[r] for r in range(len(ids)) if r not in listed]
    units, place = [], {}  # place[(row, t)] -> (unit, index in unit)
    for u, g in enumerate(groups):
        n = common_prefix([ids[r] for r in g])
        tokens = [(tok, t, u, 0) for t, tok in enumerate(ids[g[0]][:n])]
        for k, r in enumerate(g, 1):
            for t in range(len(ids[r])):
                if t >= n:
                    tokens.append((ids[r][t], t, u, k))
                place[r, t] = (u, t if t < n else len(tokens) - 1)
        units.append(tokens)
    width = max(map(len, units))
    rows: list[list] = []
    start = {}  # unit -> (row, column of its first token)
    for u in sorted(range(len(units)), key=lambda u: -len(units[u])):
        row = next((i for i, r in enumerate(rows) if len(r) + len(units[u]) <= width), None)
        if row is None:
            rows.append([])
            row = len(rows) - 1
        start[u] = (row, len(rows[row]))
        rows[row] += units[u]
    where = []
    for r, row_ids in enumerate(ids):
        for t in range(len(row_ids)):
            u, i = place[r, t]
            where.append(start[u][0] * width + start[u][1] + i)
    return rows, where


def supported(config) -> bool:
    """SDPA attention (it takes the boolean mask as given), full attention in every layer (a sliding window
    would need its own mask) and no router (its logits and load-balancing loss are not handed back)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    sliding = (getattr(text, "sliding_window", None) and getattr(text, "use_sliding_window", True)) or \
        any("sliding" in str(t) for t in getattr(text, "layer_types", None) or ())
    routed = any(getattr(text, k, None) for k in ("num_experts", "num_local_experts", "n_routed_experts"))
    return config._attn_implementation == "sdpa" and not sliding and not routed


def _forward(backbone, *args, **kwargs):
    """The backbone's forward while wrapped: shared inside its PrefixSharing's `over`, as it was elsewhere."""
    sharing, original = backbone._align_prefix_sharing, backbone._align_unshared_forward
    if len(args) == 1 and "input_ids" not in kwargs:  # sequence classifiers pass input_ids by position
        args, kwargs = (), {**kwargs, "input_ids": args[0]}
    if sharing.groups is None or args or not PrefixSharing.shareable(kwargs):
        return original(*args, **kwargs)
    return sharing._shared_forward(original, **kwargs)


def _blocks(rows: list[list[tuple[int, int, int, int]]]) -> list[list[tuple[int, int, int, int]]]:
    """Packed rows (per token: id, position, unit, segment) -> per row, its attention blocks (start, end, prefix
    start, prefix end) in column order. A unit's prefix (segment 0) precedes its suffixes in the same row."""
    out = []
    for row in rows:
        runs = []  # [unit, segment, start, end]
        for i, (_, _, unit, segment) in enumerate(row):
            if runs and runs[-1][:2] == [unit, segment]:
                runs[-1][3] = i + 1
            else:
                runs.append([unit, segment, i, i + 1])
        prefix = {unit: (a, b) for unit, segment, a, b in runs if segment == 0}
        out.append([(a, b, *((a, a) if segment == 0 else prefix.get(unit, (a, a)))) for unit, segment, a, b in runs])
    return out


class PrefixSharing:
    """Wraps the backbones of `models` (a policy and its frozen reference copy) once; inside `over(groups)`
    their forwards of right-padded batches share the groups' prefixes (groups: disjoint lists of row indices).
    The wrapper is a method of the backbone and keeps its state on it, so a deep copy of the model is a model
    of its own (it runs its own weights, unshared until wrapped), and wrapping twice wraps once."""

    def __init__(self, *models_):
        self.groups, self._last = None, None  # _last: the packing of the batch last run, kept within `over`
        inners = [models.unwrap(m) for m in models_]
        self.active = all(supported(inner.config) for inner in inners)
        if self.active:
            attention.install()
        self.backbones = [inner.base_model for inner in inners]
        for backbone in self.backbones:
            if not hasattr(backbone, "_align_unshared_forward"):
                backbone._align_unshared_forward = backbone.forward
                backbone.forward = types.MethodType(_forward, backbone)
            backbone._align_prefix_sharing = self

    @contextlib.contextmanager
    def over(self, groups: Sequence[Sequence[int]] | None) -> Iterator[None]:
        """Groups of row indices of the coming batches (rows in none of them run alone); None: no sharing."""
        for backbone in self.backbones:  # the latest `over` is the one in charge of a backbone
            backbone._align_prefix_sharing = self
        self.groups = groups if self.active else None
        try:
            yield
        finally:
            self.groups, self._last = None, None

    @staticmethod
    def shareable(kwargs) -> bool:
        """A right-padded batch of token ids, with nothing that would fix positions or ask for more outputs."""
        mask = kwargs.get("attention_mask")
        if kwargs.get("input_ids") is None or mask is None or mask.dim() != 2:
            return False
        unset = ("position_ids", "cache_position", "past_key_values", "cache", "inputs_embeds", "output_attentions",
                 "output_hidden_states", "output_router_logits")
        return all(not kwargs.get(k) if k.startswith("output") else kwargs.get(k) is None for k in unset) \
            and bool((mask[:, 1:] <= mask[:, :-1]).all())

    def _packed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(token ids, position ids, 4-D mask, gather index, attention blocks) of the packed rows; built once per
        batch inside an `over` (DPO's policy and reference forwards run the same batch)."""
        key = (input_ids, attention_mask, self.groups)
        if self._last is not None and all(a is b for a, b in zip(self._last[0], key)):
            return self._last[1]
        n, length = input_ids.shape
        lengths = attention_mask.sum(-1).tolist()
        rows, where = plan([row[:k] for row, k in zip(input_ids.tolist(), lengths)], self.groups)
        width = max(map(len, rows))
        pad = [(0, 0, -1, 0)] * width
        packed = torch.tensor([r + pad[len(r):] for r in rows], device=input_ids.device)  # [R, W, 4]
        token, position, unit, segment = packed.unbind(-1)
        same_unit = unit[:, :, None] == unit[:, None, :]
        own_part = (segment[:, None, :] == 0) | (segment[:, None, :] == segment[:, :, None])
        causal = torch.ones(width, width, dtype=torch.bool, device=input_ids.device).tril()
        index, flat = [], 0
        for k in lengths:  # each original position -> its packed token; pads -> the row's last real token
            index += where[flat:flat + k] + [where[flat + k - 1] if k else 0] * (length - k)
            flat += k
        built = (token, position, (same_unit & own_part & causal)[:, None], torch.tensor(index, device=input_ids.device),
                 _blocks(rows))
        self._last = (key, built)
        return built

    def _shared_forward(self, original, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs):
        """Right-padded rows -> packed shared rows -> the backbone -> hidden states in the rows' layout (a pad
        position gets its row's last real state: never read)."""
        kwargs = {k: v for k, v in kwargs.items() if k not in ("position_ids", "cache_position")}  # None: ours
        token, position, mask, index, blocks = self._packed(input_ids, attention_mask)
        if input_ids.device.type == "cpu":  # measured there; an accelerator runs one kernel on the dense mask
            kwargs[BLOCKS] = blocks
        out = original(input_ids=token, attention_mask=mask, position_ids=position, **kwargs)
        hidden = out.last_hidden_state
        gathered = hidden.reshape(-1, hidden.size(-1)).index_select(0, index)
        return type(out)(last_hidden_state=gathered.view(*input_ids.shape, -1))
