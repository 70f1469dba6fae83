"""Data formats and bad input: every error names the file, the row and the field; nothing is half-written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from align import data
from align.cli import app
from align.errors import DataError

CHAT = [{"role": "user", "content": "what is the color of the sky"}, {"role": "assistant", "content": "blue"}]
EXPECTED = {"messages": CHAT}


@pytest.mark.parametrize("record", [
    {"messages": CHAT},
    {"conversations": [{"from": "human", "value": CHAT[0]["content"]}, {"from": "gpt", "value": "blue"}]},
    {"instruction": "what is the color of the sky", "output": "blue"},
    {"instruction": "what is the color of the sky", "input": "", "output": "blue"},
    {"prompt": "what is the color of the sky", "completion": "blue"},
    {"prompt": [CHAT[0]], "completion": [CHAT[1]]},
], ids=["messages", "sharegpt", "alpaca", "alpaca-empty-input", "prompt-completion", "prompt-completion-chat"])
def test_sft_formats_normalise_to_messages(record, jsonl):
    loaded = data.load_sft(jsonl("d.jsonl", [record, record]))
    assert loaded.values() == [EXPECTED, EXPECTED]
    assert loaded.files[0]["rows"] == 2 and loaded.files[0]["format"] in data.SFT_FORMATS


def test_alpaca_input_is_appended_to_the_instruction(jsonl):
    loaded = data.load_sft(jsonl("d.jsonl", [{"instruction": "Summarise.", "input": "A long text.", "output": "Short."}]))
    assert loaded.values()[0]["messages"][0]["content"] == "Summarise.\n\nA long text."


def test_text_rows(jsonl):
    assert data.load_sft(jsonl("d.jsonl", [{"text": "hello world"}])).values() == [{"text": "hello world"}]


def test_file_types_json_csv_parquet_datasets_and_gzip(tmp_path):
    rows = [{"prompt": "what is the color of the sky", "completion": "blue"}] * 3
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "b.json").write_text(json.dumps({"data": rows}))
    with open(tmp_path / "c.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["prompt", "completion"])
        w.writeheader()
        w.writerows(rows)
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "e_dir"))
    with gzip.open(tmp_path / "f.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    for name in ("a.json", "b.json", "c.csv", "d.parquet", "e_dir", "f.jsonl.gz"):
        assert data.load_sft(str(tmp_path / name)).values() == [EXPECTED] * 3, name


def error_of(fn, *args) -> DataError:
    with pytest.raises(DataError) as e:
        fn(*args)
    return e.value


@pytest.mark.parametrize("rows, message", [
    ([{"messages": CHAT}, {"messages": [{"role": "user", "content": "hi"}]}],
     "d.jsonl, row 2, field 'messages': the conversation must end with an assistant turn"),
    ([{"messages": CHAT}, {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}]}],
     "d.jsonl, row 2, field 'messages[1].content': empty"),
    ([{"messages": [{"role": "robot", "content": "hi"}]}], "d.jsonl, row 1, field 'messages[0].role': unknown role 'robot'"),
    ([{"messages": "hello"}], "d.jsonl, row 1, field 'messages': expected a non-empty list of messages, got a string"),
    ([{"messages": CHAT}, {"messages": []}],
     "d.jsonl, row 2, field 'messages': expected a non-empty list of messages, got an empty list"),
    ([{"messages": {"role": "user"}}], "d.jsonl, row 1, field 'messages': expected a non-empty list of messages, got an object"),
    ([{"prompt": 3, "completion": "y"}], "d.jsonl, row 1, field 'prompt': expected a non-empty list of messages, got a number (3)"),
    ([{"messages": [{"role": "user", "content": ["hi"]}]}],
     "d.jsonl, row 1, field 'messages[0].content': expected a string, got a list"),
    ([{"instruction": "x", "output": 3}], "d.jsonl, row 1, field 'output': expected a string, got int"),
    ([{"prompt": "x", "completion": "y"}, {"prompt": "x"}],
     "d.jsonl, row 2, field 'completion': missing field (this file is in prompt-completion format)"),
    ([{"question": "x", "answer": "y"}], "d.jsonl, row 1: unknown format: columns ['answer', 'question']"),
    ([["a", "b"]], "d.jsonl, row 1: expected an object, got list"),
])
def test_bad_rows_are_located(rows, message, jsonl):
    err = error_of(data.load_sft, jsonl("d.jsonl", rows))
    assert str(err).endswith(message) or message in str(err), str(err)
    assert str(err).startswith(str(Path(err.file)))


def test_invalid_json_line_and_missing_file_and_unknown_type(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"text": "ok"}) + "\n\n{not json\n")
    assert "d.jsonl, row 3: invalid JSON" in str(error_of(data.load_sft, str(p)))
    assert "nope.jsonl: no such file or directory" in str(error_of(data.load_sft, str(tmp_path / "nope.jsonl")))
    (tmp_path / "d.txt").write_text("hi")
    assert "unknown file type '.txt'" in str(error_of(data.load_sft, str(tmp_path / "d.txt")))
    (tmp_path / "empty.jsonl").write_text("")
    assert "empty.jsonl: no rows" in str(error_of(data.load_sft, str(tmp_path / "empty.jsonl")))


def test_cli_bad_data_exits_2_before_loading_a_model(tmp_path, jsonl):
    bad = jsonl("bad.jsonl", [{"messages": CHAT}, {"prompt": "only a prompt"}])
    out = tmp_path / "run"
    # the model path does not exist: had the model been loaded first, the error would be about the model
    result = CliRunner().invoke(app, ["sft", "--model", str(tmp_path / "no-model"), "--data", bad, "--output", str(out)])
    assert result.exit_code == 2, result.output
    assert "bad.jsonl, row 2, field 'messages': missing field" in result.output
    assert not out.exists()


def test_over_long_row_is_refused_with_its_location(tiny_model, tmp_path, jsonl):
    rows = [{"prompt": CHAT[0]["content"], "completion": "blue"}, {"prompt": "the cat " * 200, "completion": "blue"}]
    path = jsonl("long.jsonl", rows)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["sft", "--model", tiny_model, "--data", path, "--output", str(out),
                                      "--max-length", "64"])
    assert result.exit_code == 2
    assert "long.jsonl, row 2:" in result.output and "over max_length 64" in result.output
    assert not out.exists()


def test_data_inspect_shows_loss_tokens_and_end_of_turn(tiny_model, jsonl):
    from align import preview

    text = preview.inspect_sft([jsonl("d.jsonl", [{"messages": CHAT}])], tiny_model, 1, 64, True, False, color=False)
    assert "[[blue<|im_end|>]]" in text  # the answer and its end-of-turn token carry loss, nothing else
    assert text.count("[[") == 2 and "WARNING" not in text  # the legend and the one span
    assert "end-of-turn token: '<|im_end|>'" in text
    everything = preview.inspect_sft([jsonl("d.jsonl", [{"messages": CHAT}])], tiny_model, 1, 64, False, False,
                                     color=False)
    assert "WARNING: every token carries loss" in everything


WANTED = "; ".join(f"{n} ({', '.join(k)})" for n, k in data.SFT_FORMATS.items())


@pytest.mark.parametrize("name, content, message", [
    # the first record is on line 3 (blank lines before it): row 3, not row 1
    ("a.jsonl", b'\n\n{"question": "q", "answer": "a"}\n',
     f"a.jsonl, row 3: unknown format: columns ['answer', 'question']; expected one of: {WANTED}"),
    ("b.jsonl", b'\n{"instruction": "x"}\n', "b.jsonl, row 2, field 'output': missing field (the row looks like alpaca format)"),
    ("c.json", b'[{"question": "q"}]', f"c.json, row 1: unknown format: columns ['question']; expected one of: {WANTED}"),
    # JSON errors: the real column (and line, for a whole-file JSON document)
    ("d.jsonl", b'{"text": "ok"}\n{"text": "a" "b"}\n', "d.jsonl, row 2: invalid JSON (Expecting ',' delimiter at column 14)"),
    ("e.json", b'[{"text": "ok"},\n {"text": "a",, "b"}]\n',
     "e.json: invalid JSON (Expecting property name enclosed in double quotes at line 2, column 15)"),
    # bytes that are not UTF-8: row (JSONL line, CSV record) or line, and column
    ("f.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n', "f.jsonl, row 2: not UTF-8 text: byte 0xe9 at column 14"),
    ("g.json", b'[{"text": "ok"},\n {"text": "caf\xe9"}]\n', "g.json: not UTF-8 text: byte 0xe9 at line 2, column 15"),
    ("h.csv", b'text,x\nok,1\n"two\nlines caf\xe9",2\n',
     "h.csv, row 2, field 'text': not UTF-8 text: byte 0xe9 at character 14"),
    ("i.jsonl.gz", __import__("gzip").compress(b'{"text": "\xff"}\n'), "i.jsonl.gz, row 1: not UTF-8 text: byte 0xff at column 11"),
], ids=["unknown-format-row", "near-format-row", "unknown-format-json", "jsonl-column", "json-line-column",
        "utf8-jsonl", "utf8-json", "utf8-csv", "utf8-gz"])
def test_messages_say_where_the_problem_really_is(tmp_path, name, content, message):
    """Exact messages: the real row of an unrecognised record, the real column of a JSON error, the row/line
    and column of a byte that is not UTF-8."""
    (tmp_path / name).write_bytes(content)
    assert str(error_of(data.load_sft, str(tmp_path / name))) == f"{tmp_path / name}".removesuffix(name) + message


def test_max_length_zero_is_not_reported_as_a_data_error(tiny_model, tmp_path, jsonl):
    from align import chat, models
    from align.errors import ConfigError

    with pytest.raises(ConfigError, match="max_length must be a positive number of tokens, got 0"):
        chat.encode_chat(models.load_tokenizer(tiny_model), CHAT, 0)
    path = jsonl("d.jsonl", [{"messages": CHAT}])
    result = CliRunner().invoke(app, ["sft", "--model", tiny_model, "--data", path, "--output",
                                      str(tmp_path / "run"), "--max-length", "0"])
    assert result.exit_code == 2, result.output
    assert "max_length" in result.output and "row" not in result.output and "d.jsonl" not in result.output
    assert not (tmp_path / "run").exists()


def test_files_that_cannot_be_read_are_data_errors(tmp_path):
    """A damaged gzip body, a file that is not parquet, a CSV row with more cells than its header: exit-2 errors
    naming the file (and the row), not tracebacks, and not a silently shortened answer."""
    import gzip

    good = gzip.compress(("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(200))).encode())
    damaged = tmp_path / "d.jsonl.gz"
    damaged.write_bytes(good[:20] + bytes(b ^ 0x5A for b in good[20:60]) + good[60:])
    assert "d.jsonl.gz: cannot read file" in str(error_of(data.load_sft, str(damaged)))
    for name in ("e.parquet", "f.parquet.gz"):
        (tmp_path / name).write_bytes(b"PAR1 not really" if name == "e.parquet" else gzip.compress(b"PAR1"))
        assert f"{name}: cannot read file as parquet" in str(error_of(data.load_sft, str(tmp_path / name)))
    csv_file = tmp_path / "c.csv"
    csv_file.write_text("prompt,completion\nWhat is 2+2?,Four\nWhat is 3+3?,Six, obviously\n")
    assert str(error_of(data.load_sft, str(csv_file))).endswith(
        "c.csv, row 2: 3 values for a 2-column header (quote fields that hold the delimiter)")
    bom = tmp_path / "excel.csv"  # Excel writes a byte-order mark before the header
    bom.write_bytes(b"\xef\xbb\xbfprompt,completion\nwhat is the color of the sky,blue\n")
    assert data.load_sft(str(bom)).values() == [EXPECTED]


@pytest.mark.parametrize("row, message", [
    ({"prompt": "p", "chosen": [{"role": "user", "content": "A"}], "rejected": "B"},
     "row 1, field 'chosen[0].role': an answer holds assistant messages only, got role 'user'"),
    ({"prompt": "p", "responses": [{"text": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}],
                                    "rank": 1}, {"text": "c", "rank": 2}]},
     "row 1, field 'responses[0].text[1].role': an answer holds assistant messages only"),
    ({"prompt": "p", "chosen": "a", "rejected": "b", "margin": float("nan")},
     "row 1, field 'margin': expected a finite number, got nan"),
    ({"prompt": "p", "responses": [{"text": "a", "score": 1.0}, {"text": "b", "score": float("-inf")}]},
     "row 1, field 'responses[1].score': expected a finite number, got -inf"),
])
def test_bad_comparisons_are_located(row, message, jsonl):
    err = error_of(data.load_pairs, jsonl("pairs.jsonl", [row]))
    assert message in str(err), str(err)


def test_selections_and_all_skipped_files_are_clear(jsonl):
    path = jsonl("pairs.jsonl", [{"prompt": "p", "chosen": "same", "rejected": "same"}] * 3)
    assert str(error_of(data.load_pairs, path)).endswith(
        "pairs.jsonl: no usable rows: every row was skipped (chosen equals rejected: 3)")
    for bad in ("[abc]", "[1:2:3]", "[0.5:]", "[3]"):
        assert f"cannot read the selection {bad}: use [start:stop]" in str(error_of(data.load_pairs, path + bad))
    assert "has a percentage over 100" in str(error_of(data.load_pairs, path + "[:150%]"))
    assert data.is_comparison_file(path + "[:2]")
