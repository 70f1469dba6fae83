"""Data files -> rows in one canonical shape per kind. Every problem is reported with file, row and field.

Canonical shapes (messages are `{"role", "content"}` dicts):
    sft:     {"messages": [...]}            or {"text": str} for plain language modelling
    pairs:   {"prompt": [...], "chosen": [...], "rejected": [...], "margin": float | None, "group": int}
    prompts: {"prompt": [...]}
Ranked comparisons become pairs; the pairs of one prompt share a `group` so they can be batched together.
Row numbers are 1-based: the line of a JSONL file, the record of a JSON/CSV/Parquet/`datasets` table.
A path may end in a slice of its records, `file.jsonl[:90%]`, `file.jsonl[90%:]`, `file.jsonl[-100:]` (counts
or percentages, Python's slice rules): one file gives a training split and a held-out split that never overlap.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import itertools
import json
import math
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from align.errors import ConfigError, DataError

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


@dataclass
class Row:
    """One normalised example and where it came from (so later errors can still name it)."""

    file: str
    row: int
    value: dict[str, Any]

    def error(self, message: str, field: str | None = None) -> DataError:
        return DataError(self.file, message, self.row, field)


@dataclass
class Loaded:
    rows: list[Row]
    files: list[dict[str, Any]] = field(default_factory=list)  # path, sha256, rows, format
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count

    def values(self) -> list[dict[str, Any]]:
        return [r.value for r in self.rows]


# --- reading tables ----------------------------------------------------------------------------------

SLICE = re.compile(r"^(?P<path>.+)\[(?P<start>-?\d+%?)?:(?P<stop>-?\d+%?)?\]$")


def split_spec(spec: str) -> tuple[str, str | None]:
    """'file[a:b]' -> ('file', '[a:b]'); a path without a slice (or an existing file whose name ends so) -> (path, None)."""
    m = SLICE.match(str(spec))
    if Path(spec).exists():
        return str(spec), None
    if not m:
        bad = re.match(r"^(?P<path>.+)(?P<sel>\[[^\[\]]*\])$", str(spec))
        if bad and Path(bad["path"]).exists():
            raise DataError(bad["path"], f"cannot read the selection {bad['sel']}: use [start:stop] with whole "
                                         "numbers or percentages, e.g. [:-100], [1000:], [:90%]")
        return str(spec), None
    for bound in (m["start"], m["stop"]):
        if bound and bound.endswith("%") and abs(int(bound[:-1])) > 100:
            raise DataError(m["path"], f"the selection [{m['start'] or ''}:{m['stop'] or ''}] has a percentage "
                                       "over 100")
    return m["path"], f"[{m['start'] or ''}:{m['stop'] or ''}]"


def exists(spec: str) -> bool:
    return Path(split_spec(spec)[0]).exists()


def select(records: list, selection: str | None) -> list:
    """The records a slice '[a:b]' names; a percentage is of the file's record count, rounded down."""
    if selection is None:
        return records
    def bound(text: str) -> int | None:
        if not text:
            return None
        return int(text[:-1]) * len(records) // 100 if text.endswith("%") else int(text)
    start, stop = selection[1:-1].split(":")
    return records[bound(start):bound(stop)]


def _open_text(path: Path, newline: str | None = None):
    """Text, with bytes that are not UTF-8 kept as lone surrogates (see _not_utf8) so they can be located."""
    if path.suffix == ".gz":  # utf-8-sig: a byte-order mark (Excel's CSV) is not part of the first field's name
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="surrogateescape", newline=newline)
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline=newline)


_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def _not_utf8(text: str) -> tuple[int, str] | None:
    """(index, message) of the first byte in `text` that was not UTF-8, or None."""
    m = _ESCAPED_BYTE.search(text)
    return m and (m.start(), f"not UTF-8 text: byte 0x{ord(m.group()) - 0xDC00:02x}")


def _suffix(path: Path) -> str:
    suffixes = [s for s in path.suffixes if s != ".gz"]
    return suffixes[-1].lower() if suffixes else ""


def read_table(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield (row number, record) from a jsonl/json/csv/parquet file or a saved `datasets` directory."""
    p = Path(path)
    if not p.exists():
        raise DataError(str(p), "no such file or directory")
    kind = "dir" if p.is_dir() else _suffix(p)
    readers = {"dir": _read_datasets_dir, ".jsonl": _read_jsonl, ".ndjson": _read_jsonl, ".json": _read_json,
               ".csv": _read_csv, ".tsv": _read_csv, ".parquet": _read_parquet}
    if kind not in readers:
        raise DataError(str(p), f"unknown file type '{kind or p.name}' (use .jsonl, .json, .csv, .parquet "
                                "or a saved datasets directory)")
    try:
        yield from readers[kind](p)
    except (OSError, UnicodeDecodeError, EOFError, zlib.error) as e:
        raise DataError(str(p), f"cannot read file ({e})") from None


def _read_jsonl(p: Path) -> Iterator[tuple[int, Any]]:
    with _open_text(p) as f:
        for n, line in enumerate(f, 1):
            bad = _not_utf8(line)
            if bad:
                raise DataError(str(p), f"{bad[1]} at column {bad[0] + 1}", n)
            if line.strip():
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(str(p), f"invalid JSON ({e.msg} at column {e.colno})", n) from None


def _read_json(p: Path) -> Iterator[tuple[int, Any]]:
    with _open_text(p) as f:
        text = f.read()
    bad = _not_utf8(text)
    if bad:
        line = text.count("\n", 0, bad[0]) + 1
        raise DataError(str(p), f"{bad[1]} at line {line}, column {bad[0] - text.rfind(chr(10), 0, bad[0])}")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(str(p), f"invalid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        doc = doc["data"]
    if not isinstance(doc, list):
        raise DataError(str(p), "a JSON file must hold a list of records (or {\"data\": [...]})")
    yield from enumerate(doc, 1)


def _read_csv(p: Path) -> Iterator[tuple[int, Any]]:
    with _open_text(p, newline="") as f:
        reader = csv.DictReader(f, delimiter="\t" if _suffix(p) == ".tsv" else ",")
        for n, rec in enumerate(reader, 1):
            if None in rec:  # DictReader's key for cells beyond the header: an unquoted comma in a field
                raise DataError(str(p), f"{len(reader.fieldnames) + len(rec[None])} values for a "
                                f"{len(reader.fieldnames)}-column header (quote fields that hold the delimiter)", n)
            for key, value in rec.items():
                for text in (key, value) if isinstance(value, str) else (key,):
                    bad = _not_utf8(text) if isinstance(text, str) else None
                    if bad:
                        raise DataError(str(p), f"{bad[1]} at character {bad[0] + 1}"
                                        + (" of the header" if text is key else ""), n, key)
            yield n, rec


def _read_parquet(p: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(p)
    except (pa.ArrowException, ValueError) as e:  # not parquet, truncated, or compressed around
        raise DataError(str(p), f"cannot read file as parquet ({e})") from None
    yield from enumerate(table.to_pylist(), 1)


def _read_datasets_dir(p: Path) -> Iterator[tuple[int, Any]]:
    from datasets import DatasetDict, load_from_disk

    try:
        ds = load_from_disk(str(p))
    except Exception as e:  # datasets raises FileNotFoundError and others for non-dataset dirs
        raise DataError(str(p), f"not a saved `datasets` directory ({e})") from None
    if isinstance(ds, DatasetDict):
        if "train" not in ds:
            raise DataError(str(p), f"a DatasetDict without a 'train' split (splits: {', '.join(ds)})")
        ds = ds["train"]
    yield from enumerate(ds, 1)


def fingerprint(path: str | Path) -> str:
    """sha256 of a file, or of every file of a directory in name order: recorded in manifests."""
    p, h = Path(path), hashlib.sha256()
    for f in sorted(p.rglob("*")) if p.is_dir() else [p]:
        if f.is_file():
            h.update(f.relative_to(p).as_posix().encode() if p.is_dir() else b"")
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


# --- field checks --------------------------------------------------------------------------------------

def _text(rec: dict, key: str, where: tuple[str, int], required: bool = True) -> str:
    if key not in rec or rec[key] is None:
        if required:
            raise DataError(*where[:1], "missing field", where[1], key)
        return ""
    value = rec[key]
    if not isinstance(value, str):
        raise DataError(where[0], f"expected a string, got {type(value).__name__}", where[1], key)
    if required and not value.strip():
        raise DataError(where[0], "empty", where[1], key)
    return value


def _found(value: Any) -> str:
    """What a wrong-typed field holds, for error messages: 'a string', 'an empty list', 'a number (3)'..."""
    if isinstance(value, str):
        return "a string" if value else "an empty string"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, (list, tuple)):
        return "a list" if value else "an empty list"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else type(value).__name__


def _messages(value: Any, where: tuple[str, int], key: str, role_map: dict | None = None,
              role_key: str = "role", content_key: str = "content") -> list[dict]:
    if not isinstance(value, list) or not value:
        raise DataError(where[0], f"expected a non-empty list of messages, got {_found(value)}", where[1], key)
    out = []
    for i, m in enumerate(value):
        f = f"{key}[{i}]"
        if not isinstance(m, dict):
            raise DataError(where[0], f"expected a message object, got {type(m).__name__}", where[1], f)
        role = m.get(role_key)
        role = role_map.get(role, role) if role_map and isinstance(role, str) else role
        if role not in ROLES:
            raise DataError(where[0], f"unknown role {m.get(role_key)!r}", where[1], f"{f}.{role_key}")
        content = m.get(content_key)
        if not isinstance(content, str):
            raise DataError(where[0], "missing field" if content is None else f"expected a string, got {_found(content)}",
                            where[1], f"{f}.{content_key}")
        if not content.strip():
            raise DataError(where[0], "empty", where[1], f"{f}.{content_key}")
        out.append({"role": role, "content": content})
    return out


def _as_messages(value: Any, role: str, where: tuple[str, int], key: str) -> list[dict]:
    """A field that is either plain text (one message of `role`) or a list of messages."""
    if isinstance(value, str):
        if not value.strip():
            raise DataError(where[0], "empty", where[1], key)
        return [{"role": role, "content": value}]
    if value is None:
        raise DataError(where[0], "missing field", where[1], key)
    return _messages(value, where, key)


def _answer(value: Any, where: tuple[str, int], key: str) -> list[dict]:
    """A compared answer (chosen, rejected, a ranked response): text, or assistant messages only. A user turn in
    it would leave the prompt's last answer as the thing compared."""
    msgs = _as_messages(value, "assistant", where, key)
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            raise DataError(where[0], f"an answer holds assistant messages only, got role {m['role']!r}", where[1],
                            f"{key}[{i}].role")
    return msgs


def _records(path: str) -> Iterator[tuple[tuple[str, int], dict]]:
    for n, rec in read_table(path):
        if not isinstance(rec, dict):
            raise DataError(path, f"expected an object, got {type(rec).__name__}", n)
        yield (path, n), rec


def _detect(path: str, row: int, rec: dict, formats: dict[str, tuple[str, ...]]) -> str:
    """The first format whose columns a record (row `row`) has; else name the nearest format's missing field."""
    for name, keys in formats.items():
        if all(k in rec for k in keys):
            return name
    near = max(formats, key=lambda n: sum(k in rec for k in formats[n]) / len(formats[n]))
    if any(k in rec for k in formats[near]):
        missing = next(k for k in formats[near] if k not in rec)
        raise DataError(path, f"missing field (the row looks like {near} format)", row, missing)
    wanted = "; ".join(f"{n} ({', '.join(k)})" for n, k in formats.items())
    raise DataError(path, f"unknown format: columns {sorted(rec)}; expected one of: {wanted}", row)


def _load(paths: list[str] | str, formats: dict[str, tuple[str, ...]], convert) -> Loaded:
    paths = [paths] if isinstance(paths, str) else list(paths)
    if not paths:
        raise ConfigError("no data file given: pass --data FILE (--prompts FILE for ppo)")
    out = Loaded(rows=[])
    for spec in paths:
        path, selection = split_spec(spec)
        fmt, count = None, 0
        for where, rec in select(list(_records(path)), selection):
            fmt = fmt or _detect(path, where[1], rec, formats)
            missing = [k for k in formats[fmt] if k not in rec]
            if missing:
                raise DataError(path, f"missing field (this file is in {fmt} format)", where[1], missing[0])
            for value in convert(fmt, rec, where, out):
                out.rows.append(Row(path, where[1], value))
                count += 1
        if fmt is None:
            raise DataError(path, "no rows" + (f" in {selection}" if selection else ""))
        if not count:
            raise DataError(path, "no usable rows" + (f" in {selection}" if selection else "") + ": every row was "
                            "skipped (" + ", ".join(f"{k}: {v}" for k, v in out.skipped.items() if v) + ")")
        digest = fingerprint(path)
        if selection:  # the selection is what trained: a changed slice is changed data
            digest = hashlib.sha256(f"{digest}{selection}".encode()).hexdigest()
        out.files.append({"path": spec, "sha256": digest, "format": fmt, "rows": count})
    return out


# --- SFT ------------------------------------------------------------------------------------------------

SFT_FORMATS = {
    "messages": ("messages",),
    "sharegpt": ("conversations",),
    "alpaca": ("instruction", "output"),
    "prompt-completion": ("prompt", "completion"),
    "prompt-response": ("prompt", "response"),
    "text": ("text",),
    "chosen": ("chosen",),  # comparisons: SFT on the preferred answers (pairs or HH-RLHF dialogues)
}


def _chosen_dialogue(rec: dict, where: tuple[str, int]) -> list[dict]:
    """The preferred side of a comparison row as one conversation: prompt + chosen, or an HH-RLHF dialogue."""
    if "prompt" in rec:
        return _as_messages(rec["prompt"], "user", where, "prompt") + \
            _as_messages(rec["chosen"], "assistant", where, "chosen")
    value = rec["chosen"]
    return parse_hh(value, where, "chosen") if isinstance(value, str) else _messages(value, where, "chosen")


def _sft_row(fmt: str, rec: dict, where: tuple[str, int], out: Loaded) -> Iterator[dict]:
    if fmt == "chosen":
        msgs = _chosen_dialogue(rec, where)
        if msgs[-1]["role"] != "assistant":  # as with pairs: a few real HH dialogues end on a user turn
            out.skipped["dialogue does not end with an answer"] = out.skipped.get("dialogue does not end with an answer", 0) + 1
            return
        yield {"messages": msgs}
        return
    if fmt == "text":
        yield {"text": _text(rec, "text", where)}
        return
    if fmt == "messages":
        msgs = _messages(rec["messages"], where, "messages")
    elif fmt == "sharegpt":
        msgs = _messages(rec["conversations"], where, "conversations", SHAREGPT_ROLES, "from", "value")
    elif fmt == "alpaca":
        instruction, extra = _text(rec, "instruction", where), _text(rec, "input", where, required=False)
        msgs = [{"role": "user", "content": instruction + (f"\n\n{extra}" if extra.strip() else "")},
                {"role": "assistant", "content": _text(rec, "output", where)}]
    else:  # prompt-completion / prompt-response, plain strings or message lists
        answer = "completion" if fmt == "prompt-completion" else "response"
        msgs = _as_messages(rec["prompt"], "user", where, "prompt") + \
            _as_messages(rec[answer], "assistant", where, answer)
    if msgs[-1]["role"] != "assistant":
        raise DataError(where[0], "the conversation must end with an assistant turn", where[1],
                        {"messages": "messages", "sharegpt": "conversations"}.get(fmt, "completion"))
    yield {"messages": msgs}


def load_sft(paths: list[str] | str) -> Loaded:
    return _load(paths, SFT_FORMATS, _sft_row)


# --- preferences: pairs, HH-RLHF dialogues, rankings --------------------------------------------------

PAIR_FORMATS = {
    "ranked": ("prompt", "responses"),
    "pairs": ("prompt", "chosen", "rejected"),
    "implicit-prompt": ("chosen", "rejected"),  # HH-RLHF dialogues or full message lists
}
HH_TURN = re.compile(r"\n\n(Human|Assistant):[ \t]?")


def parse_hh(text: str, where: tuple[str, int], key: str) -> list[dict]:
    """`\\n\\nHuman: ...\\n\\nAssistant: ...` -> messages."""
    parts = HH_TURN.split("\n\n" + text.lstrip("\n") if not text.startswith("\n\n") else text)
    if parts[0].strip() or len(parts) < 3:
        raise DataError(where[0], "not an HH-RLHF dialogue ('\\n\\nHuman: ...\\n\\nAssistant: ...')", where[1], key)
    return [{"role": "user" if who == "Human" else "assistant", "content": said.strip()}
            for who, said in zip(parts[1::2], parts[2::2])]


def split_last_turn(msgs: list[dict], where: tuple[str, int], key: str) -> tuple[list[dict], list[dict]]:
    """A conversation -> (prompt, answer): the answer is what follows the last non-assistant turn."""
    last_user = max((i for i, m in enumerate(msgs) if m["role"] != "assistant"), default=-1)
    if last_user < 0 or last_user == len(msgs) - 1:
        raise DataError(where[0], "needs a prompt followed by an assistant response", where[1], key)
    return msgs[: last_user + 1], msgs[last_user + 1:]


def _number(rec: dict, key: str, where: tuple[str, int], required: bool = False, field: str | None = None) -> float | None:
    value = rec.get(key)
    if value is None or value == "":
        if required:
            raise DataError(where[0], "missing field", where[1], field or key)
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(where[0], f"expected a number, got {value!r}", where[1], field or key) from None
    if not math.isfinite(number):
        raise DataError(where[0], f"expected a finite number, got {value!r}", where[1], field or key)
    return number


def ranked_pairs(responses: list[tuple[list[dict], float]]) -> list[tuple[int, int]]:
    """(chosen, rejected) index pairs from responses with a quality value (higher = better); ties give none."""
    return [(i, j) if qi > qj else (j, i)
            for (i, (_, qi)), (j, (_, qj)) in itertools.combinations(enumerate(responses), 2) if qi != qj]


def _ranked_responses(rec: dict, where: tuple[str, int]) -> list[tuple[list[dict], float]]:
    items = rec["responses"]
    if not isinstance(items, list):
        raise DataError(where[0], f"expected a list of responses, got {_found(items)}", where[1], "responses")
    if len(items) < 2:
        raise DataError(where[0], f"a ranking needs at least two responses, got {len(items)}", where[1], "responses")
    out, kinds = [], set()
    for i, item in enumerate(items):
        f = f"responses[{i}]"
        if isinstance(item, (str, list)):  # listed best -> worst
            kinds.add("order")
            out.append((_answer(item, where, f), float(len(items) - i)))
            continue
        if not isinstance(item, dict):
            raise DataError(where[0], f"expected text or an object, got {type(item).__name__}", where[1], f)
        key = next((k for k in ("text", "response", "content", "completion") if k in item), None)
        if key is None:
            raise DataError(where[0], "missing field 'text'", where[1], f)
        if "rank" in item:  # 1 = best
            kinds.add("rank")
            quality = -_number(item, "rank", where, True, f"{f}.rank")
        elif "score" in item:
            kinds.add("score")
            quality = _number(item, "score", where, True, f"{f}.score")
        else:
            raise DataError(where[0], "needs a 'rank' or 'score'", where[1], f)
        out.append((_answer(item[key], where, f"{f}.{key}"), quality))
    if len(kinds) > 1:  # e.g. rank 1 (best) vs score 1 (low) would compare meaningless numbers
        raise DataError(where[0], "mixes " + " and ".join(sorted(kinds)) + "; use one way of ranking per row "
                        "(all listed best -> worst, all with 'rank', or all with 'score')", where[1], "responses")
    return out


def _pair_rows(fmt: str, rec: dict, where: tuple[str, int], out: Loaded) -> Iterator[dict]:
    group = len(out.rows) and out.rows[-1].value["group"] + 1
    margin = _number(rec, "margin", where)
    if fmt == "ranked":
        prompt = _as_messages(rec["prompt"], "user", where, "prompt")
        responses = _ranked_responses(rec, where)
        pairs = ranked_pairs(responses)
        out.skipped["ties"] = out.skipped.get("ties", 0) + len(responses) * (len(responses) - 1) // 2 - len(pairs)
        for c, r in pairs:
            yield {"prompt": prompt, "chosen": responses[c][0], "rejected": responses[r][0],
                   "margin": margin, "group": group}
        return
    if fmt == "pairs":
        prompt = _as_messages(rec["prompt"], "user", where, "prompt")
        chosen, rejected = _answer(rec["chosen"], where, "chosen"), _answer(rec["rejected"], where, "rejected")
    else:
        # Whole dialogues (HH-RLHF): real files have a few rows whose dialogue ends on a user turn or whose two
        # sides diverge before the last answer. Those are skipped and counted; malformed text is an error.
        dialogues = {}
        for key in ("chosen", "rejected"):
            value = rec[key]
            dialogues[key] = parse_hh(value, where, key) if isinstance(value, str) else _messages(value, where, key)
        if any(d[-1]["role"] != "assistant" for d in dialogues.values()):
            out.skipped["dialogue does not end with an answer"] = out.skipped.get("dialogue does not end with an answer", 0) + 1
            return
        prompt, chosen = split_last_turn(dialogues["chosen"], where, "chosen")
        r_prompt, rejected = split_last_turn(dialogues["rejected"], where, "rejected")
        if r_prompt != prompt:
            out.skipped["different conversations"] = out.skipped.get("different conversations", 0) + 1
            return
    if chosen == rejected:
        out.skipped["chosen equals rejected"] = out.skipped.get("chosen equals rejected", 0) + 1
        return
    yield {"prompt": prompt, "chosen": chosen, "rejected": rejected, "margin": margin, "group": group}


def is_comparison_file(path: str) -> bool:
    """Whether a file holds comparisons (pairs or rankings) rather than single responses, from its first row."""
    for _, rec in read_table(split_spec(path)[0]):
        return isinstance(rec, dict) and any(all(k in rec for k in keys) for keys in PAIR_FORMATS.values())
    return False


def load_pairs(paths: list[str] | str) -> Loaded:
    """Pairwise (explicit or HH-style implicit prompt) and ranked comparisons -> pairs."""
    return _load(paths, PAIR_FORMATS, _pair_rows)


# --- prompts ----------------------------------------------------------------------------------------------

PROMPT_FORMATS = {"prompt": ("prompt",), "messages": ("messages",), "text": ("text",), "chosen": ("chosen",)}


def _prompt_row(fmt: str, rec: dict, where: tuple[str, int], out: Loaded, comparisons: bool = False
                ) -> Iterator[dict]:
    compared = next((k for k in ("chosen", "rejected", "responses") if k in rec), None)
    if compared and not comparisons:  # its prompt column would be read and its answers silently ignored
        raise DataError(where[0], "a comparison row (chosen/rejected or ranked responses), not a prompt: PPO "
                                  "needs prompts ({prompt}, {messages} or {text}); comparisons are data for "
                                  "`align rm` and `align dpo` (to take their prompts on purpose, set "
                                  "comparison_prompts)", where[1], compared)
    if fmt == "chosen":  # an HH-RLHF dialogue: the prompt is everything before its last answer
        msgs = _chosen_dialogue(rec, where)
        if msgs[-1]["role"] != "assistant":
            out.skipped["dialogue does not end with an answer"] = out.skipped.get("dialogue does not end with an answer", 0) + 1
            return
        yield {"prompt": split_last_turn(msgs, where, "chosen")[0]}
        return
    msgs = _as_messages(rec[fmt], "user", where, fmt)
    if msgs[-1]["role"] == "assistant":
        msgs = split_last_turn(msgs, where, fmt)[0]  # a full conversation: prompt = all but the answer
    yield {"prompt": msgs}


def load_prompts(paths: list[str] | str, comparisons: bool = False) -> Loaded:
    """Prompts; with `comparisons`, the prompts of comparison rows too (their answers ignored)."""
    return _load(paths, PROMPT_FORMATS, functools.partial(_prompt_row, comparisons=comparisons))
