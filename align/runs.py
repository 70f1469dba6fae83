"""Run directories and their manifest (`align.json`): the hand-off between stages.

Layout of a run:
    align.json      manifest: stage, status, lineage (base + adapters to merge), config, data, metrics, ...
    adapter/        this stage's LoRA adapter (safetensors), or model/ for full fine-tuning
    tokenizer/      tokenizer + chat template the stage trained with
    checkpoints/    Trainer checkpoints (for --resume); removed when the run completes
    logs.jsonl      one JSON line per logging step
Files are written to a temporary name and renamed, so a kill never leaves a corrupt manifest.

Claiming an output (Run.open for runs, check_replaceable + atomic_dir for `align merge` and `align eval`'s
report folder, check_output_file for `align score`/`align generate` files), on the path it names once created
(output_path: `runs/new/../sft` is `runs/sft`):
  - a missing or empty directory is used as it is; the current directory, its parents, the home directory
    (or a parent of it) and / are never used as an output nor replaced;
  - an existing run is continued with --resume (same stage and same options: see RESUME_MAY_DIFFER), or
    replaced with --overwrite, which replaces only what align wrote: a run directory whose align.json is our
    manifest, a merged checkpoint holding align-merged.json. Anything else is refused (exit 2), saying why;
  - a replaced run is not deleted when it is claimed: it is renamed to a hidden sibling `.NAME.old-PID`
    (listed in the new manifest under `replaces`) and deleted once the new run is complete. If the new run
    fails before its first checkpoint, the new directory is removed and the old one renamed back; if it is
    killed, the old one stays beside it until the new run (resumed) completes.
Finishing (Run.finish): the stage saves its model, then the manifest is written `complete`, and only then
are checkpoints and replaced runs removed. A kill at any point leaves a complete run, or a resumable one
whose last checkpoint may be the final step (train.fit then loads it instead of training again).
Liveness: the manifest records the pid and host of the process writing it; a `running` manifest whose
process is gone from this host is reported `interrupted` (read_manifest).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from align.data import fingerprint
from align.errors import RunError, TrainingDiverged

MANIFEST = "align.json"
MERGED_MARKER = "align-merged.json"  # marks a checkpoint written by `align merge` (so --overwrite may replace it)
REPORT_MARKER = "eval.json"  # marks a folder written by `align eval`
MARKERS = {MERGED_MARKER: "align_merged", REPORT_MARKER: "align_eval"}  # marker file -> the key it holds
COMPLETE, RUNNING, INTERRUPTED = "complete", "running", "interrupted"
FAILED = "failed"  # training diverged (TrainingDiverged): kept to be read, never complete, not resumed by `align run`

# Options that may differ when a run is resumed: they cannot change what it trains (where it is written,
# how often it logs, checkpoints or evaluates, how a batch is split into micro-batches or whether activations
# are recomputed: the same gradients up to rounding). Every other option must equal the run's.
RESUME_MAY_DIFFER = frozenset({
    "output", "resume", "overwrite", "logging_steps", "save_steps", "save_total_limit", "eval_steps",
    "sample_steps", "cache_dir", "micro_batch_tokens", "micro_batch_size", "gradient_checkpointing",
    "trust_remote_code",
})
# Data options are compared by the content of their files (the manifest's sha256), not by their paths.
DATA_KEYS = {"data": "train", "eval_data": "eval", "prompts": "prompts", "eval_prompts": "eval_prompts"}


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def wall_seconds(manifest: dict[str, Any]) -> float | None:
    """Seconds from the run's creation to its finish: calendar time, so a resumed run's pauses count too."""
    try:
        start, end = (datetime.strptime(manifest[k], "%Y-%m-%dT%H:%M:%S%z") for k in ("created", "finished"))
    except (KeyError, TypeError, ValueError):
        return None
    return (end - start).total_seconds()


def write_json_atomic(path: Path, obj: Any, exclusive: bool = False) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, default=str) + "\n", exclusive)


def write_text_atomic(path: str | Path, text: str, exclusive: bool = False) -> None:
    """Write to a temporary sibling, then rename: a reader (or a kill) never sees half a file. `exclusive`: link
    it into place instead, FileExistsError if the file is there (a claim only one process can make)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        if exclusive:
            os.link(tmp, path)
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_output_file(path: str | Path, overwrite: bool) -> Path:
    """A file output (`align score`, `align generate`), checked before any work: never a directory, and an
    existing file only with --overwrite."""
    path = output_path(path)
    if path.is_dir():
        raise RunError(f"{path}: is a directory; --output takes a file name here")
    if path.exists() and not overwrite:
        raise RunError(f"{path}: already exists; pass --overwrite to replace it")
    return path


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Fill a temporary directory beside `target`; on success it replaces `target` in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    aside = None
    try:
        yield tmp
        if target.exists() or target.is_symlink():
            aside = move_aside(target)  # deleted only once the new one is in place
        os.replace(tmp, target)
    except BaseException:
        if aside is not None and not target.exists():
            os.rename(aside, target)
            aside = None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)


def move_aside(path: str | Path) -> Path:
    """Rename `path` to a hidden sibling `.NAME.old-PID` (a free name) and return it."""
    path = Path(os.path.abspath(path))
    for i in range(1000):
        aside = path.with_name(f".{path.name}.old-{os.getpid()}" + (f"-{i}" if i else ""))
        if not (aside.exists() or aside.is_symlink()):
            break
    os.rename(path, aside)
    return aside


def output_path(path: str | Path) -> Path:
    """The directory an output path names once it exists. `runs/new/../sft` is `runs/sft` as soon as `runs/new`
    is created, though it did not exist when checked: every check and write uses this resolved path (symlinks
    followed, `..` applied), shown relative to the current directory when it lies below it."""
    real = Path(os.path.realpath(Path(path).expanduser()))
    try:
        return real.relative_to(Path.cwd().resolve()) if real != Path.cwd().resolve() else real
    except ValueError:
        return real


def protected(path: str | Path) -> str | None:
    """Why `path` may never be an output nor be replaced: the current directory, one of its parents, the
    home directory or one of its parents, the filesystem root. None for any other path."""
    p = Path(path).expanduser().resolve()
    cwd, home = Path.cwd().resolve(), Path.home().resolve()
    if p == Path(p.anchor):
        return "the filesystem root"
    if p == cwd:
        return "the current directory"
    if p in cwd.parents:
        return "a parent of the current directory"
    if p == home:
        return "your home directory"
    if p in home.parents:
        return "a parent of your home directory"
    return None


def check_replaceable(path: str | Path, overwrite: bool, marker: str, what: str) -> Path:
    """Refuse to write `what` to `path` where that would replace something align did not write (one holding
    `marker`: a JSON file with the key MARKERS[marker]), or where it would replace anything without
    --overwrite. Returns the resolved path (output_path) to write to."""
    path = output_path(path)
    if path.exists() and not path.is_dir():
        raise RunError(f"{path}: is a file, not a directory")
    why = protected(path)
    if why:
        raise RunError(f"{path}: is {why}; align never writes its output there nor replaces it "
                       f"(give it a directory of its own)")
    if not (path.exists() and any(path.iterdir())):
        return path
    if not marked(path / marker):
        raise RunError(f"{path}: already exists and is not {'an' if what[0] in 'aeiou' else 'a'} {what} written by "
                       f"align (no {marker} of align's); "
                       f"--overwrite only replaces what align wrote: choose another --output")
    if not overwrite:
        raise RunError(f"{path}: already exists; pass --overwrite to replace it")
    return path


def marked(marker: Path) -> bool:
    """`marker` is a JSON file align wrote: it holds MARKERS[its name] (an evaluation report written before
    that key existed is known by its fields)."""
    try:
        content = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(content, dict) and (bool(content.get(MARKERS[marker.name])) or (
        marker.name == REPORT_MARKER and {"judge", "prompts", "pairs", "results"} <= content.keys()))


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("align", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def process_info() -> dict[str, Any]:
    """Who writes a manifest: recorded at start so that a run whose process is gone can be told apart."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "pid_started": _process_started(os.getpid())}


def _process_started(pid: int) -> str | None:
    """The process's start time (clock ticks after boot, /proc/PID/stat field 22): tells a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, as another user's process
    except (OSError, OverflowError):
        return False
    now_started = _process_started(pid) if started else None
    return not (now_started and now_started != started)


def writer(manifest: dict[str, Any]) -> str:
    return f"pid {manifest.get('pid')} on {manifest.get('host')}"


def is_stale(manifest: dict[str, Any]) -> bool:
    """A `running` manifest whose process is gone from this host (killed, or the machine rebooted).

    Our own pid counts as gone: this process is not inside that run (an earlier attempt in it ended)."""
    if manifest.get("status") != RUNNING or not _has_pid(manifest) or manifest.get("host") != socket.gethostname():
        return False
    return manifest["pid"] == os.getpid() or not _alive(manifest["pid"], manifest.get("pid_started"))


def is_live(manifest: dict[str, Any]) -> bool:
    """Still `running` after the staleness check, written by another process on this host."""
    return manifest.get("status") == RUNNING and manifest.get("host") == socket.gethostname() and _has_pid(manifest)


def _has_pid(manifest: dict[str, Any]) -> bool:
    pid = manifest.get("pid")
    return isinstance(pid, int) and not isinstance(pid, bool) and pid > 0


def peek_manifest(run_dir: str | Path) -> dict[str, Any] | None:
    """The manifest if `run_dir` holds one that align wrote, else None (no error)."""
    try:
        manifest = read_manifest(run_dir)
    except RunError:
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("align_manifest") and manifest.get("stage") else None


def read_manifest(run_dir: str | Path, require_complete: bool = False) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        raise RunError(f"{run_dir}: not an align run directory (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: corrupt manifest ({e})") from None
    except OSError as e:
        raise RunError(f"{path}: cannot read manifest ({e.strerror})") from None
    if not isinstance(manifest, dict):
        raise RunError(f"{path}: corrupt manifest (not a JSON object)")
    if is_stale(manifest):
        manifest["status"] = INTERRUPTED
        manifest["error"] = f"its process ({writer(manifest)}) is gone: killed before it could record why"
    if require_complete and manifest.get("status") != COMPLETE:
        raise RunError(f"{run_dir}: the {manifest.get('stage')} run is {manifest.get('status')}, not complete "
                       f"(finish it with --resume first)")
    if require_complete and (changed := lineage_changes(manifest)):
        raise RunError(f"{run_dir}: {changed} since this run trained on top of it, so its model cannot be rebuilt "
                       f"as it was trained; run this stage again (--overwrite)")
    return manifest


def is_claim(manifest: dict[str, Any]) -> bool:
    """A manifest written when a run claimed its directory, before the run started (Run.start adds the config)."""
    return "config" not in manifest and manifest.get("status") in (RUNNING, INTERRUPTED)


def lineage_changes(manifest: dict[str, Any]) -> str | None:
    """How the adapters a run was trained on top of differ from the files there now (an earlier stage re-run
    with --overwrite), or None. Adapters are recorded by path and content (lineage.sha256); a manifest from
    before contents were recorded is not checked."""
    lineage = manifest.get("lineage") or {}
    changes = (content_change(a, digest) for a, digest in zip(lineage.get("adapters") or [], lineage.get("sha256") or []))
    return next((c for c in changes if c), None)


def reward_changes(manifest: dict[str, Any]) -> str | None:
    """How the reward model a run trained against (PPO: reward_model, see model_record) differs from the one
    there now, or None. The run's own model is still whole (its lineage decides that), but it no longer answers
    to that reward: `align run` trains it again, and a resume against the new one is refused."""
    rm = manifest.get("reward_model") or {}
    change = rm.get("sha256") and content_change(rm["weights"], rm["sha256"])
    return f"the reward model {change}" if change else None


def content_change(path: str, digest: str) -> str | None:
    if not Path(path).exists():
        return f"{path} is gone"
    return f"{path} has changed" if fingerprint(path) != digest else None


def model_record(run_dir: str | Path, manifest: dict[str, Any]) -> dict[str, str | None]:
    """A run's trained weights by path and content, for a manifest that depends on them (reward_changes). A
    full model is not hashed (gigabytes on every `align run`), as in lineage_of: its changes go unseen."""
    weights = run_model_dir(Path(run_dir).resolve(), manifest)
    return {"weights": str(weights), "sha256": None if manifest.get("full") else fingerprint(weights)}


def run_model_dir(run_dir: str | Path, manifest: dict[str, Any]) -> Path:
    return Path(run_dir) / ("model" if manifest.get("full") else "adapter")


def lineage_of(cfg) -> dict[str, Any]:
    """Where a stage's model starts: a base model (--model) or a previous run (--from)."""
    if cfg.from_run and cfg.model:
        raise RunError("give --model or --from, not both (--from takes the base model from the run's manifest)")
    if cfg.from_run:
        prev = read_manifest(cfg.from_run, require_complete=True)
        run_dir = Path(cfg.from_run).resolve()
        own = run_model_dir(run_dir, prev)
        if prev.get("full"):
            return {"base": str(own), "adapters": [], "sha256": [], "tokenizer": str(run_dir / "tokenizer"),
                    "from": str(run_dir)}
        adapters = prev["lineage"]["adapters"] + [str(own)]
        # read_manifest just checked the recorded hashes of prev's own lineage: only its adapter is hashed anew
        known = prev["lineage"].get("sha256") or [fingerprint(a) for a in prev["lineage"]["adapters"]]
        return {"base": prev["lineage"]["base"], "adapters": adapters, "sha256": known + [fingerprint(own)],
                "tokenizer": str(run_dir / "tokenizer"), "from": str(run_dir)}
    if not cfg.model:
        raise RunError("no model: pass --model (hub id, path or 'smollm2-135m') or --from RUN_DIR")
    return {"base": cfg.model, "adapters": [], "sha256": [], "tokenizer": None, "from": None}


def check_same_template(a: dict[str, Any], b: dict[str, Any], what: str) -> None:
    """Refuse to combine models that tokenise text differently (e.g. a policy and another template's RM)."""
    for key in ("tokenizer_hash", "template_hash"):
        if a.get(key) != b.get(key):
            raise RunError(f"{what}: {key.replace('_', ' ')} differs ({a.get(key)} vs {b.get(key)}); the two "
                           f"models would see different text. Train both from the same base/SFT run.")


def is_main_process() -> bool:
    """Rank 0 under torchrun/accelerate (read from the environment: true before torch.distributed starts)."""
    return int(os.environ.get("RANK", "0")) == 0


class Run:
    """One stage's output directory. Use as a context manager around the work that fills it.

    Under several processes only rank 0 claims and writes the directory; the other ranks get a read-only
    view (they may read checkpoints to resume) that writes nothing.
    """

    def __init__(self, path: str | Path, stage: str):
        self.path, self.stage = Path(path), stage
        self.fresh = False
        self.created = False  # we made the directory (else it existed, empty)
        self.started = False  # start() wrote the manifest
        self.aside: Path | None = None  # the run this one replaces, renamed aside until this one completes
        self.manifest: dict[str, Any] = {}

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @classmethod
    def open(cls, path: str | None, stage: str, overwrite: bool = False, resume: bool = False) -> Run:
        """Claim the output directory: never silently overwrite, resume only what this stage started, and
        replace only a run align wrote (see the module docstring)."""
        if not path:
            raise RunError("no output directory: pass --output DIR")
        if not is_main_process():
            return ReadOnlyRun(output_path(path), stage)
        run = cls(output_path(path), stage)
        if run.path.exists() and not run.path.is_dir():
            raise RunError(f"{path}: is a file, not a directory")
        run._drop_dead_claim()
        exists = run.path.exists() and any(run.path.iterdir())
        if resume:
            return run._claim_for_resume(exists)
        why = protected(run.path)
        if why:
            raise RunError(f"{path}: is {why}; align never writes a run there nor replaces it "
                           f"(give the run a directory of its own, e.g. --output runs/NAME)")
        if exists:
            run._replace(overwrite)
        run.created = not run.path.exists()
        try:  # ours only if this process made the directory (or was given it empty) and put the first manifest
            # in it: two runs started at once cannot share one
            run.path.mkdir(parents=True, exist_ok=not run.created)
            write_json_atomic(run.path / MANIFEST, {"align_manifest": 1, "stage": stage, "status": RUNNING,
                                                    **process_info()}, exclusive=True)
        except FileExistsError:
            raise RunError(f"{path}: was claimed by another run just now; give each run its own --output") from None
        run.fresh = True
        return run

    def _drop_dead_claim(self) -> None:
        """A directory holding only the claim of a run whose process died before the run started (out of memory
        while loading the model, say) is as it was before: the claim goes."""
        if (self.path / MANIFEST).exists() and [p.name for p in self.path.iterdir()] == [MANIFEST]:
            manifest = peek_manifest(self.path)
            if manifest and is_claim(manifest) and manifest["status"] == INTERRUPTED:  # not a live one
                (self.path / MANIFEST).unlink()

    def _claim_for_resume(self, exists: bool) -> Run:
        """--resume: only this stage's own unfinished run, and not while its process still runs."""
        if not exists:
            raise RunError(f"{self.path}: nothing to resume (the directory is empty or missing)")
        manifest = read_manifest(self.path)
        if manifest.get("stage") != self.stage:
            raise RunError(f"{self.path}: holds a {manifest.get('stage')} run, not {self.stage}")
        if manifest.get("status") == COMPLETE:
            self.manifest = manifest
            self._remove_leftovers()  # a kill between `complete` and the clean-up
            raise RunError(f"{self.path}: the run is already complete; nothing to resume")
        if is_live(manifest):
            raise RunError(f"{self.path}: the run is in progress ({writer(manifest)}); wait for it to end, or "
                           f"stop that process, before resuming")
        if manifest.get("status") == RUNNING:
            print(f"[align] {self.path}: the manifest says running ({writer(manifest)}); that host cannot be "
                  "checked from here: resuming (make sure that process is gone)", file=sys.stderr, flush=True)
        self.manifest = manifest
        return self

    def _replace(self, overwrite: bool) -> None:
        """An existing directory: only an align run that is not running is replaced, with --overwrite, and it is
        moved aside (restored if this run fails early) rather than deleted."""
        old = peek_manifest(self.path)
        if old is None:
            raise RunError(f"{self.path}: already exists and is not an align run directory (no manifest {MANIFEST} "
                           f"written by align); --overwrite only replaces align runs: choose another --output")
        if is_live(old):
            raise RunError(f"{self.path}: holds a {old['stage']} run in progress ({writer(old)}); "
                           f"it cannot be resumed or replaced while that process runs")
        if not overwrite:
            if old.get("status") == COMPLETE or old.get("stage") != self.stage:
                raise RunError(f"{self.path}: already exists; pass --overwrite to replace its "
                               f"{old.get('status')} {old['stage']} run")
            raise RunError(f"{self.path}: already exists; pass --overwrite to replace it or --resume to continue it "
                           f"(its {old['stage']} run is {old.get('status')})")
        aside = move_aside(self.path)
        if peek_manifest(aside) != old:  # another run replaced it between our look and our move: its directory
            os.rename(aside, self.path)  # goes back, untouched
            raise RunError(f"{self.path}: was claimed by another run just now; give each run its own --output")
        self.aside = aside
        self.manifest = {"replaces": [str(self.aside)] + [p for p in old.get("replaces") or [] if Path(p).exists()]}

    def write(self, **fields: Any) -> None:
        manifest = {**self.manifest, **fields}
        write_json_atomic(self.path / MANIFEST, manifest)
        self.manifest = manifest  # only once it is on disk: what we hold is what a reader would see

    def start(self, cfg_dict: dict[str, Any], **fields: Any) -> None:
        """Write the manifest `running`. A resumed run must be the same run: other options are refused here,
        before anything is written."""
        if self.fresh:
            self.manifest = {"align_manifest": 1, "stage": self.stage, "created": now(), **self.manifest}
        elif self.manifest.get("config") is not None:
            diffs, allowed = resume_differences(self.manifest, cfg_dict, fields.get("data"))
            if diffs:
                raise RunError(f"{self.path}: --resume continues the same run, but these options differ from "
                               f"the run's (option: run's value -> given):\n"
                               + "".join(f"  {k}: {a!r} -> {b!r}\n" for k, a, b in diffs)
                               + "Give the run's values, or start another run (a new --output, or --overwrite to "
                               f"replace this one). Free to change on resume: {', '.join(sorted(RESUME_MAY_DIFFER))}.")
            started_on = (self.manifest.get("lineage") or {}).get("sha256")
            if fields.get("lineage") and started_on is not None and fields["lineage"]["sha256"] != started_on:
                raise RunError(f"{self.path}: the run it was started from ({fields['lineage']['from']}) has changed "
                               "since (re-run with --overwrite?): this run cannot continue on top of it; start it "
                               "again (--overwrite)")
            rm_then, rm_now = (self.manifest.get("reward_model") or {}), (fields.get("reward_model") or {})
            if rm_then.get("sha256") and rm_now and rm_now.get("sha256") != rm_then["sha256"]:
                raise RunError(f"{self.path}: its reward model ({rm_then['weights']}) has changed since the run "
                               "started: continuing would optimise another reward; start it again (--overwrite)")
            ended = {k: self.manifest[k] for k in ("status", "error") if self.manifest.get(k)}
            fields["resumes"] = (self.manifest.get("resumes") or []) + [
                {"time": now(), "command": sys.argv, "changed": {k: [a, b] for k, a, b in allowed}, "ended": ended}]
        if not self.fresh:
            fields["error"] = None  # why the last process stopped is history now (in its resume entry, if any)
        self.started = True
        self.write(status=RUNNING, config=cfg_dict, versions=library_versions(),
                   **({"command": sys.argv} if self.fresh else {}), **process_info(), **fields)

    def latest_checkpoint(self) -> str | None:
        """The newest checkpoint whose trainer state was fully written; half-written ones are removed."""
        if not self.checkpoints.exists():
            return None
        done = []
        for ckpt in self.checkpoints.glob("checkpoint-*"):
            try:
                json.loads((ckpt / "trainer_state.json").read_text())
                done.append((int(ckpt.name.split("-")[-1]), ckpt))
            except (OSError, ValueError):
                if is_main_process():
                    shutil.rmtree(ckpt, ignore_errors=True)
        return str(max(done)[1]) if done else None

    def finish(self, metrics: dict[str, Any], keep_checkpoints: bool = False) -> None:
        """Mark the run complete (its model is saved), then remove what it no longer needs. In this order a
        kill leaves either a complete run or one whose final checkpoint a resume finishes from."""
        self.write(status=COMPLETE, finished=now(), metrics=metrics)
        self._remove_leftovers(keep_checkpoints)

    def _remove_leftovers(self, keep_checkpoints: bool = False) -> None:
        """Of a complete run: its checkpoints, and the runs it replaced (hidden siblings `.NAME.old-PID`)."""
        if not keep_checkpoints:
            shutil.rmtree(self.checkpoints, ignore_errors=True)
        for old in self.manifest.get("replaces") or []:
            old = Path(old)
            if old.name.startswith(f".{Path(os.path.abspath(self.path)).name}.old-") and peek_manifest(old):
                shutil.rmtree(old, ignore_errors=True)

    def _discard(self) -> None:
        """Remove this fresh run (nothing worth keeping) and put back the run it replaced, if any."""
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
        else:  # an empty directory we were given: empty it again, keep it
            for entry in self.path.iterdir():
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        if self.aside is not None and not self.path.exists():
            os.rename(self.aside, self.path)
            print(f"[align] the run failed before its first checkpoint; the previous run is back in {self.path}",
                  file=sys.stderr)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None or self.manifest.get("status") == COMPLETE:
            return
        checkpointed = self.checkpoints.exists() and any(self.checkpoints.iterdir())
        if self.fresh and self.aside is not None and not checkpointed:
            self._discard()  # failed early (diverged too): the run it was to replace is put back
            return
        if isinstance(exc, TrainingDiverged) and self.started and (self.path / MANIFEST).exists():
            self.write(status=FAILED, error=str(exc), finished=now())  # kept to be read: its logs show where
            if self.aside is not None:
                print(f"[align] the run it replaces stays in {self.aside}", file=sys.stderr)
            return
        if self.fresh and (not self.started or not checkpointed):
            self._discard()  # nothing worth keeping: leave no half-written run
            return
        if self.started and (self.path / MANIFEST).exists():
            self.write(status=INTERRUPTED, error=f"{exc_type.__name__}: {exc}")
            print(f"[align] run interrupted; continue it with --resume --output {self.path}", file=sys.stderr)
            if self.aside is not None:
                print(f"[align] the run it replaces stays in {self.aside} until this one completes",
                      file=sys.stderr)


def resume_differences(manifest: dict[str, Any], cfg_dict: dict[str, Any], data: dict[str, Any] | None
                       ) -> tuple[list[tuple[str, Any, Any]], list[tuple[str, Any, Any]]]:
    """(options that differ and may not, options that differ and may) between a run's manifest and the
    options it is resumed with. Data files are compared by content; an option only one side knows (a
    manifest from another align version) is not compared."""
    old = manifest.get("config") or {}
    new = json.loads(json.dumps(cfg_dict, default=str))
    old_data, data = manifest.get("data") or {}, data or {}
    diffs, allowed = [], []
    for key in sorted(set(old) & set(new)):
        split = DATA_KEYS.get(key)
        if split and isinstance(old_data.get(split), list) and isinstance(data.get(split), list):
            a = [f.get("sha256") for f in old_data[split]]
            b = [f.get("sha256") for f in json.loads(json.dumps(data[split], default=str))]
            if a != b:
                diffs.append((f"{key} (file contents, sha256)", [h[:12] if h else h for h in a],
                              [h[:12] if h else h for h in b]))
        elif old[key] != new[key]:
            (allowed if key in RESUME_MAY_DIFFER else diffs).append((key, old[key], new[key]))
    return diffs, [d for d in allowed if d[0] not in ("resume", "overwrite")]


class ReadOnlyRun(Run):
    """What ranks other than 0 hold: the same interface, writing nothing."""

    def write(self, **fields: Any) -> None:
        self.manifest.update(fields)

    def finish(self, metrics: dict[str, Any], keep_checkpoints: bool = False) -> None:
        self.manifest.update(status=COMPLETE, metrics=metrics)

    def __exit__(self, exc_type, exc, tb) -> None:
        return None
