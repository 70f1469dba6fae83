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
    ([{"messages": "hello"}], "d.jsonl, row 1, field 'messages': expected a non-empty list of messages"),
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
