"""--resume continues the same run: changed options are refused, finishing survives a kill at any point,
and a run whose process is gone reads as interrupted."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from align import config, data, runs, sft, train
from align.cli import app
from align.errors import RunError

from test_sft import qa_rows, sft_cfg

runner = CliRunner()


def interrupted_run(out: Path, flags: dict) -> dict:
    """An SFT run directory as a kill before its first checkpoint leaves it (no training needed)."""
    cfg = config.build(config.SFTConfig, flags=flags)
    run = runs.Run.open(cfg.output, "sft")
    run.start(config.to_dict(cfg), data={"train": data.load_sft(cfg.data).files, "eval": []})
    run.write(status=runs.INTERRUPTED, error="Killed")
    return flags


def cli_flags(flags: dict) -> list[str]:
    out = []
    for k, v in flags.items():
        for item in v if isinstance(v, list) else [v]:
            out += [f"--{k.replace('_', '-')}", str(item)]
    return out


@pytest.fixture
def base_flags(tiny_model, tmp_path, jsonl):
    return dict(model=tiny_model, data=[jsonl("qa.jsonl", qa_rows(1))], output=str(tmp_path / "run"), max_steps=2,
                batch_size=2, learning_rate=5e-3, max_length=64, lora_r=8, logging_steps=1, save_steps=1)


@pytest.mark.parametrize("changes, listed", [
    ({"learning_rate": 1e-3}, ["learning_rate: 0.005 -> 0.001"]),
    ({"lora_r": 4}, ["lora_r: 8 -> 4"]),
    ({"batch_size": 3, "max_length": 32, "max_steps": 3}, ["batch_size: 2 -> 3", "max_length: 64 -> 32",
                                                            "max_steps: 2 -> 3"]),
])
def test_resume_with_changed_options_exits_2_listing_them(base_flags, changes, listed):
    interrupted_run(Path(base_flags["output"]), base_flags)
    manifest = Path(base_flags["output"]) / runs.MANIFEST
    before = manifest.read_bytes()
    result = runner.invoke(app, ["sft", "--resume", *cli_flags({**base_flags, **changes})])
    assert result.exit_code == 2, result.output
    assert "--resume continues the same run" in result.output
    for line in listed:
        assert line in result.output, result.output
    assert manifest.read_bytes() == before  # nothing rewritten, no traceback


def test_resume_with_changed_data_contents_exits_2(base_flags):
    interrupted_run(Path(base_flags["output"]), base_flags)
    old = data.fingerprint(base_flags["data"][0])
    Path(base_flags["data"][0]).write_text("".join(json.dumps(r) + "\n" for r in qa_rows(2)))  # same path
    new = data.fingerprint(base_flags["data"][0])
    result = runner.invoke(app, ["sft", "--resume", *cli_flags(base_flags)])
    assert result.exit_code == 2, result.output
    assert f"data (file contents, sha256): ['{old[:12]}'] -> ['{new[:12]}']" in result.output


def test_resume_accepts_options_that_cannot_change_the_result(base_flags):
    interrupted_run(Path(base_flags["output"]), base_flags)
    changed = {**base_flags, "logging_steps": 2, "save_steps": 5, "micro_batch_tokens": 64}
    result = runner.invoke(app, ["sft", "--resume", *cli_flags(changed)])
    assert result.exit_code == 0, result.output
    manifest = runs.read_manifest(base_flags["output"], require_complete=True)
    assert manifest["config"]["logging_steps"] == 2
    (resume,) = manifest["resumes"]  # history: what changed when, the first command stays
    assert resume["changed"] == {"logging_steps": [1, 2], "micro_batch_tokens": [-1, 64], "save_steps": [1, 5]}
    # why the earlier process stopped moves into the history: a complete run carries no error of its own
    assert resume["ended"] == {"status": runs.INTERRUPTED, "error": "Killed"} and manifest["error"] is None
    assert "--resume" not in manifest["command"]


def test_resume_after_a_kill_during_the_final_save_does_not_train_again(tiny_model, tmp_path, jsonl, monkeypatch):
    """The Trainer's checkpoint is at max_steps: a resume from it used to run step max_steps + 1."""
    dataset = jsonl("qa.jsonl", qa_rows(1))  # 3 batches an epoch: after step 2 the Trainer would run a third
    kw = dict(max_steps=2, save_steps=1, batch_size=2, packing=False, logging_steps=1)

    class Killed(BaseException):
        pass

    def killed(*a, **k):
        raise Killed()

    monkeypatch.setattr(train, "save_model", killed)
    with pytest.raises(Killed):
        sft.run(sft_cfg(tiny_model, dataset, tmp_path / "run", **kw))
    monkeypatch.undo()
    final = load_file(tmp_path / "run" / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors")
    manifest = sft.run(sft_cfg(tiny_model, dataset, tmp_path / "run", resume=True, **kw))
    assert manifest["status"] == "complete" and manifest["metrics"]["steps"] == 2
    steps = [json.loads(x)["step"] for x in (tmp_path / "run" / "logs.jsonl").read_text().splitlines()]
    assert max(steps) == 2 and steps == sorted(steps), steps
    saved = load_file(tmp_path / "run" / "adapter" / "adapter_model.safetensors")
    for k in final:
        torch.testing.assert_close(saved[k], final[k], rtol=0, atol=0)


def test_a_kill_while_finishing_never_loses_the_adapter(tiny_model, tmp_path, jsonl, monkeypatch):
    """Killed just before the manifest says complete: the adapter is there and a resume keeps it (it used to
    have removed the checkpoints already, so training restarted: logged steps 1, 2, 1, 2)."""
    dataset = jsonl("qa.jsonl", qa_rows(1))
    kw = dict(max_steps=2, save_steps=100, batch_size=2, logging_steps=1)

    class Killed(BaseException):
        pass

    real = runs.write_json_atomic

    def kill_at_complete(path, obj, **kw):
        if obj.get("status") == runs.COMPLETE:
            raise Killed()
        real(path, obj, **kw)

    monkeypatch.setattr(runs, "write_json_atomic", kill_at_complete)
    with pytest.raises(Killed):
        sft.run(sft_cfg(tiny_model, dataset, tmp_path / "run", **kw))
    monkeypatch.undo()
    adapter = tmp_path / "run" / "adapter" / "adapter_model.safetensors"
    first = load_file(adapter)
    assert runs.read_manifest(tmp_path / "run")["status"] != runs.COMPLETE
    manifest = sft.run(sft_cfg(tiny_model, dataset, tmp_path / "run", resume=True, **kw))
    assert manifest["status"] == "complete" and manifest["metrics"]["steps"] == 2
    logs = [json.loads(x) for x in (tmp_path / "run" / "logs.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logs if "loss" in x] == [1, 2], logs  # not 1, 2, 1, 2
    again = load_file(adapter)
    for k in first:
        torch.testing.assert_close(again[k], first[k], rtol=0, atol=0)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_kill_after_complete_leaves_a_complete_run(tmp_path, monkeypatch):
    run = runs.Run.open(str(tmp_path / "run"), "sft")
    with run:
        run.start({"output": str(tmp_path / "run")}, data={})
        (run.checkpoints / "checkpoint-2").mkdir(parents=True)
        monkeypatch.setattr(runs.Run, "_remove_leftovers", lambda self, keep=False: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            run.finish({"steps": 2})
        monkeypatch.undo()
    assert runs.read_manifest(tmp_path / "run", require_complete=True)
    with pytest.raises(RunError, match="already complete"):  # and the leftover checkpoints go
        runs.Run.open(str(tmp_path / "run"), "sft", resume=True)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_running_manifest_whose_process_is_gone_reads_as_interrupted(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = runs.Run.open(str(tmp_path / "run"), "sft")
    run.start({"output": str(tmp_path / "run")}, data={})
    saved = json.loads((tmp_path / "run" / runs.MANIFEST).read_text())
    assert saved["status"] == "running" and saved["pid"] == runs.os.getpid() and saved["host"] == socket.gethostname()
    runs.write_json_atomic(tmp_path / "run" / runs.MANIFEST, {**saved, "pid": dead.pid})
    manifest = runs.read_manifest(tmp_path / "run")
    assert manifest["status"] == "interrupted" and f"pid {dead.pid}" in manifest["error"]
    with pytest.raises(RunError, match="the sft run is interrupted, not complete"):
        runs.read_manifest(tmp_path / "run", require_complete=True)
    # alive, on this host: still running, and neither resumed nor replaced
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        runs.write_json_atomic(tmp_path / "run" / runs.MANIFEST, {**saved, "pid": live.pid,
                                                                  "pid_started": runs._process_started(live.pid)})
        assert runs.read_manifest(tmp_path / "run")["status"] == "running"
        with pytest.raises(RunError, match=f"in progress \\(pid {live.pid} on "):
            runs.Run.open(str(tmp_path / "run"), "sft", resume=True)
        # the same pid, reused by another process (another start time): gone
        runs.write_json_atomic(tmp_path / "run" / runs.MANIFEST, {**saved, "pid": live.pid, "pid_started": "1"})
        assert runs.read_manifest(tmp_path / "run")["status"] == "interrupted"
    finally:
        live.kill()
        live.wait()


def test_ppo_eval_prompts_are_compared_by_content_on_resume():
    """Like --prompts: the same file moved is the same run; other contents would compare "reward before ->
    after" across two prompt sets."""
    manifest = {"config": {"eval_prompts": "a/eval.jsonl"}, "data": {"eval_prompts": [{"sha256": "1" * 64}]}}
    moved, _ = runs.resume_differences(manifest, {"eval_prompts": "b/eval.jsonl"},
                                       {"eval_prompts": [{"sha256": "1" * 64}]})
    changed, _ = runs.resume_differences(manifest, {"eval_prompts": "a/eval.jsonl"},
                                         {"eval_prompts": [{"sha256": "2" * 64}]})
    assert moved == [] and changed == [("eval_prompts (file contents, sha256)", ["1" * 12], ["2" * 12])]
