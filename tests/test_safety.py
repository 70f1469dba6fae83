"""--overwrite replaces only what align wrote: never a project folder, the current directory, home or /.

Every case runs on throwaway directories under tmp_path and checks that what was there is still there, byte for
byte. Most call Run.open / the merge output check directly (no model is loaded); one goes through the CLI.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from align import runs
from align.cli import app
from align.errors import RunError, TrainingDiverged

from test_sft import qa_rows

runner = CliRunner()


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (hidden ones included) and directory under `root`, with the bytes of the files."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


def project(root: Path) -> Path:
    """A folder that is not a run: source, a README, a hidden .ssh with a key."""
    (root / "src").mkdir(parents=True)
    (root / "src" / "main.py").write_text("print('hello')\n")
    (root / "README.md").write_text("# my project\n")
    (root / ".ssh").mkdir()
    (root / ".ssh" / "id_ed25519").write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\x00\x01\n")
    return root


def fake_run(path: Path, stage: str = "sft", status: str = runs.COMPLETE, **fields) -> Path:
    """A run directory as align leaves it (manifest + adapter), without training anything."""
    (path / "adapter").mkdir(parents=True)
    (path / "adapter" / "adapter_model.safetensors").write_bytes(b"weights of the old run")
    runs.write_json_atomic(path / runs.MANIFEST, {"align_manifest": 1, "stage": stage, "status": status,
                                                  "config": {"output": str(path)}, **fields})
    return path


def refused(path, *, overwrite=True, resume=False, match: str) -> RunError:
    with pytest.raises(RunError, match=match) as e:
        runs.Run.open(str(path), "sft", overwrite=overwrite, resume=resume)
    return e.value


def test_overwrite_refuses_the_current_directory(tmp_path, monkeypatch):
    here = project(tmp_path / "proj")
    monkeypatch.chdir(here)
    before = snapshot(tmp_path)
    err = refused(".", match="is the current directory")
    assert "--overwrite" not in str(err).split(";")[1]  # it does not suggest the flag that would do it
    refused(".", overwrite=False, match="is the current directory")
    refused(str(here), match="is the current directory")  # however it is spelled
    refused("src/..", match="is the current directory")
    assert snapshot(tmp_path) == before


def test_overwrite_refuses_the_current_directory_even_when_it_is_a_run(tmp_path, monkeypatch):
    run_dir = fake_run(tmp_path / "old")
    monkeypatch.chdir(run_dir)
    before = snapshot(tmp_path)
    refused(".", match="is the current directory")
    assert snapshot(tmp_path) == before


def test_overwrite_refuses_parents_of_the_current_directory_home_and_root(tmp_path, monkeypatch):
    home = project(tmp_path / "home" / "me")
    work = home / "work" / "deep"
    work.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    before = snapshot(tmp_path)
    refused("..", match="is a parent of the current directory")
    refused(str(home.parent), match="a parent of the current directory")
    refused("~", match="your home directory|parent of the current directory")
    monkeypatch.chdir(tmp_path)
    refused(str(home), match="is your home directory")
    refused("~", match="is your home directory")
    refused(str(tmp_path / "home"), match="is a parent of your home directory")
    assert runs.protected("/") == "the filesystem root"  # (not tried for real: on a broken build that is rm -rf /)
    assert snapshot(tmp_path) == before


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path):
    folder = project(tmp_path / "keys")
    before = snapshot(tmp_path)
    err = refused(folder, match="is not an align run directory")
    assert "--overwrite only replaces align runs" in str(err)
    # without --overwrite the message must not suggest it either
    err = refused(folder, overwrite=False, match="is not an align run directory")
    assert "pass --overwrite" not in str(err)
    # a file named align.json that align did not write does not make a folder a run
    (folder / "align.json").write_text(json.dumps({"name": "my align config"}))
    before = snapshot(tmp_path)
    refused(folder, match="is not an align run directory")
    (folder / "align.json").write_text("not json at all")
    before = snapshot(tmp_path)
    refused(folder, match="is not an align run directory")
    assert snapshot(tmp_path) == before
    (tmp_path / "file").write_text("x")
    refused(tmp_path / "file", match="is a file, not a directory")


def test_overwrite_keeps_the_old_run_until_the_new_one_completes(tmp_path):
    old = fake_run(tmp_path / "runs" / "sft")
    (tmp_path / "runs" / "notes.txt").write_text("beside the run\n")
    old_files = snapshot(old)
    run = runs.Run.open(str(old), "sft", overwrite=True)
    aside = Path(run.manifest["replaces"][0])
    assert aside.parent == old.parent and aside.name.startswith(".sft.old-")
    assert snapshot(aside) == old_files  # moved aside, not deleted
    assert [p.name for p in old.iterdir()] == ["align.json"]  # only the new run's claim
    with run:
        run.start({"output": str(old)}, data={})
        assert runs.read_manifest(old)["replaces"] == [str(aside)]
        (old / "adapter").mkdir()
        (old / "adapter" / "adapter_model.safetensors").write_bytes(b"new weights")
        assert snapshot(aside) == old_files  # still there while the new run trains
        run.finish({"steps": 1})
    assert not aside.exists() and sorted(p.name for p in old.parent.iterdir()) == ["notes.txt", "sft"]
    assert (old / "adapter" / "adapter_model.safetensors").read_bytes() == b"new weights"
    assert runs.read_manifest(old, require_complete=True)["stage"] == "sft"


@pytest.mark.parametrize("when", ["before start", "after start", "diverged"])
def test_a_replacement_that_fails_before_its_first_checkpoint_puts_the_old_run_back(tmp_path, when):
    old = fake_run(tmp_path / "runs" / "sft")
    before = snapshot(tmp_path)
    error = TrainingDiverged if when == "diverged" else RuntimeError
    with pytest.raises(error, match="boom"):
        with runs.Run.open(str(old), "sft", overwrite=True) as run:
            if when != "before start":
                run.start({"output": str(old)}, data={})
                (old / "logs.jsonl").write_text("{}\n")
            raise error("boom")
    assert snapshot(tmp_path) == before


def test_a_replacement_interrupted_after_a_checkpoint_keeps_both_until_it_completes(tmp_path):
    old = fake_run(tmp_path / "runs" / "sft")
    old_files = snapshot(old)
    with pytest.raises(RuntimeError):
        with runs.Run.open(str(old), "sft", overwrite=True) as run:
            run.start({"output": str(old)}, data={})
            (run.checkpoints / "checkpoint-2").mkdir(parents=True)
            raise RuntimeError("boom")
    aside = Path(runs.read_manifest(old)["replaces"][0])
    assert runs.read_manifest(old)["status"] == runs.INTERRUPTED and snapshot(aside) == old_files
    resumed = runs.Run.open(str(old), "sft", resume=True)
    with resumed:
        resumed.start({"output": str(old)}, data={})
        resumed.finish({})
    assert not aside.exists() and not resumed.checkpoints.exists()


def test_a_resume_on_top_of_a_changed_run_is_refused(tmp_path):
    old = fake_run(tmp_path / "dpo", stage="dpo", status=runs.INTERRUPTED,
                   lineage={"base": "m", "adapters": ["/sft/adapter"], "sha256": ["aaa"], "from": "/sft"})
    run = runs.Run.open(str(old), "dpo", resume=True)
    before = snapshot(tmp_path)
    with pytest.raises(RunError, match=r"the run it was started from \(/sft\) has changed"):
        run.start({"output": str(old)}, lineage={"base": "m", "adapters": ["/sft/adapter"], "sha256": ["bbb"],
                                                 "from": "/sft"}, data={})
    assert snapshot(tmp_path) == before


def test_a_resume_against_a_changed_reward_model_is_refused(tmp_path):
    rm = fake_run(tmp_path / "rm", stage="rm")
    record = runs.model_record(rm, runs.read_manifest(rm))
    old = fake_run(tmp_path / "ppo", stage="ppo", status=runs.INTERRUPTED, reward_model=record)
    assert runs.reward_changes(runs.read_manifest(old)) is None
    (rm / "adapter" / "adapter_model.safetensors").write_bytes(b"weights of a new reward model")
    assert runs.reward_changes(runs.read_manifest(old)) == f"the reward model {record['weights']} has changed"
    before = snapshot(tmp_path)
    with pytest.raises(RunError, match=r"its reward model \(.*rm/adapter\) has changed since the run started"):
        runs.Run.open(str(old), "ppo", resume=True).start(
            {"output": str(old)}, data={}, reward_model=runs.model_record(rm, runs.read_manifest(rm)))
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("given", ["new directory", "existing empty directory"])
def test_two_runs_started_at_once_cannot_share_a_directory(tmp_path, given):
    import subprocess
    import sys

    out = tmp_path / "runs" / "sft"
    if given != "new directory":
        out.mkdir(parents=True)
    first = runs.Run.open(str(out), "sft")
    second = subprocess.run([sys.executable, "-c", f"from align import runs; runs.Run.open({str(out)!r}, 'sft')"],
                            capture_output=True, text=True)  # while the first has written nothing but its claim
    assert second.returncode == 1 and "in progress" in second.stderr, second.stderr
    with pytest.raises(RuntimeError):
        with first:
            raise RuntimeError("failed before it started")
    assert (out.exists() and not any(out.iterdir())) if given != "new directory" else not out.exists()
    with runs.Run.open(str(out), "sft") as again:  # free again
        again.start({"output": str(out)}, data={})
        again.finish({})
    assert runs.read_manifest(out, require_complete=True)["stage"] == "sft"


def test_two_replacements_at_once_do_not_move_each_others_directory(tmp_path, monkeypatch):
    old = fake_run(tmp_path / "runs" / "sft")
    seen = runs.read_manifest(old)  # what the second run saw before the first moved the old run aside
    first = runs.Run.open(str(old), "sft", overwrite=True)
    claimed = snapshot(old)
    monkeypatch.setattr(runs, "peek_manifest", lambda d, real=runs.peek_manifest: seen if Path(d) == old else real(d))
    with pytest.raises(RunError, match="claimed by another run just now"):
        runs.Run.open(str(old), "sft", overwrite=True)
    assert snapshot(old) == claimed and first.aside.exists()  # the first run's claim is back in place
    assert sorted(p.name for p in old.parent.iterdir()) == sorted([first.aside.name, "sft"])


def test_a_full_model_reward_is_recorded_by_path_only(tmp_path):
    rm = fake_run(tmp_path / "rm", stage="rm", full=True)
    (rm / "model").mkdir()
    assert runs.model_record(rm, runs.read_manifest(rm)) == {"weights": str((rm / "model").resolve()), "sha256": None}


def test_the_claim_of_a_run_that_died_before_it_started_does_not_block_the_next(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out = tmp_path / "sft"
    out.mkdir()
    runs.write_json_atomic(out / runs.MANIFEST, {"align_manifest": 1, "stage": "sft", "status": runs.RUNNING,
                                                  **runs.process_info(), "pid": int(dead.stdout)})
    assert runs.is_claim(runs.read_manifest(out))
    with runs.Run.open(str(out), "sft") as run:  # no --overwrite needed: nothing of a run is there
        run.start({"output": str(out)}, data={})
        run.finish({})
    assert runs.read_manifest(out, require_complete=True)["created"]


def test_a_claim_is_written_whole_and_only_once(tmp_path):
    runs.write_json_atomic(tmp_path / "claim.json", {"n": 1}, exclusive=True)
    with pytest.raises(FileExistsError):
        runs.write_json_atomic(tmp_path / "claim.json", {"n": 2}, exclusive=True)
    assert json.loads((tmp_path / "claim.json").read_text()) == {"n": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["claim.json"]  # no temporary file left


def test_overwrite_refuses_a_run_whose_process_is_alive(tmp_path):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        old = fake_run(tmp_path / "sft", status=runs.RUNNING, **{**runs.process_info(), "pid": proc.pid,
                                                                "pid_started": runs._process_started(proc.pid)})
        before = snapshot(tmp_path)
        refused(old, match="in progress")
        refused(old, overwrite=False, match="in progress")
        refused(old, overwrite=False, resume=True, match="in progress")
        assert snapshot(tmp_path) == before
    finally:
        proc.kill()
        proc.wait()


def test_cli_overwrite_of_a_project_folder_exits_2_and_touches_nothing(tiny_model, tmp_path, jsonl):
    data = jsonl("qa.jsonl", qa_rows(1))
    folder = project(tmp_path / "proj")
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["sft", "--model", tiny_model, "--data", data, "--output", str(folder),
                                 "--overwrite", "--max-steps", "1"])
    assert result.exit_code == 2, result.output
    assert "is not an align run directory" in result.output
    assert snapshot(tmp_path) == before


def test_pipeline_stage_with_output_dot_and_overwrite_exits_2(tiny_model, tmp_path, monkeypatch):
    here = tmp_path / "proj"
    here.mkdir()
    (here / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in qa_rows(1)))
    (here / "pipeline.yaml").write_text(yaml.safe_dump({"output": "runs", "stages": {
        "sft": {"model": tiny_model, "data": "qa.jsonl", "max_steps": 1, "output": "."}}}))
    monkeypatch.chdir(here)
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["run", "pipeline.yaml", "--overwrite"])
    assert result.exit_code == 2, result.output
    assert "is the current directory" in result.output
    assert snapshot(tmp_path) == before


def test_dot_dot_after_a_missing_folder_is_the_folder_it_names_once_created(tmp_path, monkeypatch):
    """`runs/new/../sft` is `runs/sft` as soon as `runs/new` exists: it must not pass as a new directory and
    then write into (or, failing early, delete) the complete run at runs/sft, nor replace a user's folder."""
    old = fake_run(tmp_path / "runs" / "sft")
    project(tmp_path / "runs" / "thesis")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    refused("runs/new/../sft", overwrite=False, match="already exists; pass --overwrite")
    with pytest.raises(RunError, match="is not a merged checkpoint written by align"):
        runs.check_replaceable("runs/new/../thesis", True, runs.MERGED_MARKER, "merged checkpoint")
    result = runner.invoke(app, ["merge", "runs/sft", "--output", "runs/other/../thesis"])
    assert result.exit_code == 2 and "runs/thesis: already exists and is not a merged checkpoint" in result.output
    assert snapshot(tmp_path) == before
    with pytest.raises(RuntimeError):  # replaced with --overwrite, then failing early: the old run comes back
        with runs.Run.open("runs/new/../sft", "sft", overwrite=True) as run:
            assert run.path == Path("runs/sft")
            raise RuntimeError("boom")
    assert snapshot(tmp_path) == before and runs.read_manifest(old)["status"] == runs.COMPLETE


def test_a_replacement_that_diverges_after_a_checkpoint_is_kept_failed_with_the_old_run_aside(tmp_path):
    old = fake_run(tmp_path / "runs" / "sft")
    with pytest.raises(TrainingDiverged):
        with runs.Run.open(str(old), "sft", overwrite=True) as run:
            run.start({"output": str(old)}, data={})
            (run.checkpoints / "checkpoint-2").mkdir(parents=True)
            raise TrainingDiverged("loss not finite")
    manifest = runs.read_manifest(old)
    assert manifest["status"] == runs.FAILED and runs.peek_manifest(manifest["replaces"][0])["status"] == runs.COMPLETE


def test_file_outputs_are_not_replaced_without_overwrite(tmp_path):
    """`align score/generate --output FILE`: an existing file needs --overwrite, a directory is refused, and
    both are checked before any model loads (the model here does not exist)."""
    mine = tmp_path / "answers.jsonl"
    mine.write_text("my own results\n")
    folder = project(tmp_path / "proj")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    before = snapshot(tmp_path)
    for command in (["generate", str(tmp_path / "no-model"), "--prompt", "hi"],
                    ["score", str(tmp_path / "no-run"), "--data", str(prompts)]):
        result = runner.invoke(app, [*command, "--output", str(mine)])
        assert result.exit_code == 2 and "answers.jsonl: already exists; pass --overwrite" in result.output
        result = runner.invoke(app, [*command, "--output", str(folder), "--overwrite"])
        assert result.exit_code == 2 and "proj: is a directory" in result.output, result.output
    assert snapshot(tmp_path) == before
    runs.check_output_file(mine, overwrite=True)
    runs.write_text_atomic(mine, "new\n")
    assert mine.read_text() == "new\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "answers.jsonl", "p.jsonl", "proj"]


def test_eval_report_folder_replaces_only_an_align_report(tmp_path):
    folder = project(tmp_path / "proj")
    before = snapshot(tmp_path)
    for overwrite in ([], ["--overwrite"]):
        result = runner.invoke(app, ["eval", str(tmp_path / "no-run"), "--prompts", "p.jsonl", "--output", str(folder),
                                     *overwrite])
        assert result.exit_code == 2 and "is not an evaluation report written by align" in result.output, result.output
    assert snapshot(tmp_path) == before
    report = tmp_path / "report"
    report.mkdir()
    (report / "eval.json").write_text(json.dumps({"align_eval": 1, "results": []}))
    with pytest.raises(RunError, match="already exists; pass --overwrite"):
        runs.check_replaceable(report, False, runs.REPORT_MARKER, "evaluation report")
    assert runs.check_replaceable(report, True, runs.REPORT_MARKER, "evaluation report") == report


# --- align merge ---------------------------------------------------------------------------------------

def test_merge_output_check_refuses_what_align_did_not_write(tmp_path, monkeypatch):
    folder = project(tmp_path / "proj")
    before = snapshot(tmp_path)
    for overwrite in (False, True):
        with pytest.raises(RunError, match="is not a merged checkpoint written by align") as e:
            runs.check_replaceable(folder, overwrite, runs.MERGED_MARKER, "merged checkpoint")
        assert "pass --overwrite" not in str(e.value)
    monkeypatch.chdir(folder)
    with pytest.raises(RunError, match="is the current directory"):
        runs.check_replaceable(Path("."), True, runs.MERGED_MARKER, "merged checkpoint")
    monkeypatch.setenv("HOME", str(folder))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RunError, match="is your home directory"):
        runs.check_replaceable(Path("~").expanduser(), True, runs.MERGED_MARKER, "merged checkpoint")
    assert snapshot(tmp_path) == before
    # ours (marker written by `align merge`): replaced with --overwrite only; missing or empty: fine
    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / runs.MERGED_MARKER).write_text("{}")  # a marker's name alone is not ours
    with pytest.raises(RunError, match="is not a merged checkpoint written by align"):
        runs.check_replaceable(merged, True, runs.MERGED_MARKER, "merged checkpoint")
    (merged / runs.MERGED_MARKER).write_text('{"align_merged": 1}')
    with pytest.raises(RunError, match="already exists; pass --overwrite"):
        runs.check_replaceable(merged, False, runs.MERGED_MARKER, "merged checkpoint")
    runs.check_replaceable(merged, True, runs.MERGED_MARKER, "merged checkpoint")
    runs.check_replaceable(tmp_path / "new", False, runs.MERGED_MARKER, "merged checkpoint")


def test_cli_merge_overwrite_of_a_project_folder_exits_2(tmp_path):
    folder = project(tmp_path / "proj")
    before = snapshot(tmp_path)
    # refused before the run is even read: the run directory here does not exist
    result = runner.invoke(app, ["merge", str(tmp_path / "no-run"), "--output", str(folder), "--overwrite"])
    assert result.exit_code == 2 and "is not a merged checkpoint written by align" in result.output, result.output
    assert snapshot(tmp_path) == before


def test_atomic_dir_deletes_the_old_directory_only_once_the_new_one_is_in_place(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "config.json").write_text("old")
    before = snapshot(tmp_path)
    with pytest.raises(RuntimeError):
        with runs.atomic_dir(target) as tmp:
            (tmp / "config.json").write_text("new")
            raise RuntimeError("failed while writing")
    assert snapshot(tmp_path) == before
    real = os.replace

    def failing_replace(src, dst):  # the final rename fails: the old directory comes back
        if Path(dst) == target:
            raise OSError("disk full")
        return real(src, dst)

    os.replace = failing_replace
    try:
        with pytest.raises(OSError):
            with runs.atomic_dir(target) as tmp:
                (tmp / "config.json").write_text("new")
    finally:
        os.replace = real
    assert snapshot(tmp_path) == before
    with runs.atomic_dir(target) as tmp:
        (tmp / "config.json").write_text("new")
    assert (target / "config.json").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["out"]
