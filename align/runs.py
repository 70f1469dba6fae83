"""Run directories and their manifest (`align.json`): the hand-off between stages.

Layout of a run:
    align.json      manifest: stage, status, lineage (base + adapters to merge), config, data, metrics, ...
    adapter/        this stage's LoRA adapter (safetensors), or model/ for full fine-tuning
    tokenizer/      tokenizer + chat template the stage trained with
    checkpoints/    Trainer checkpoints (for --resume); removed when the run completes
    logs.jsonl      one JSON line per logging step
Files are written to a temporary name and renamed, so a kill never leaves a corrupt manifest.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from align.errors import RunError

MANIFEST = "align.json"
COMPLETE, RUNNING, INTERRUPTED = "complete", "running", "interrupted"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def write_json_atomic(path: Path, obj: Any) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Fill a temporary directory beside `target`; on success it replaces `target` in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("align", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def read_manifest(run_dir: str | Path, require_complete: bool = False) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        raise RunError(f"{run_dir}: not an align run directory (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RunError(f"{path}: corrupt manifest ({e})") from None
    if require_complete and manifest.get("status") != COMPLETE:
        raise RunError(f"{run_dir}: the {manifest.get('stage')} run is {manifest.get('status')}, not complete "
                       f"(finish it with --resume first)")
    return manifest


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
            return {"base": str(own), "adapters": [], "tokenizer": str(run_dir / "tokenizer"), "from": str(run_dir)}
        return {"base": prev["lineage"]["base"], "adapters": prev["lineage"]["adapters"] + [str(own)],
                "tokenizer": str(run_dir / "tokenizer"), "from": str(run_dir)}
    if not cfg.model:
        raise RunError("no model: pass --model (hub id, path or 'smollm2-135m') or --from RUN_DIR")
    return {"base": cfg.model, "adapters": [], "tokenizer": None, "from": None}


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
        self.manifest: dict[str, Any] = {}

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @classmethod
    def open(cls, path: str | None, stage: str, overwrite: bool = False, resume: bool = False) -> Run:
        """Claim the output directory: never silently overwrite, resume only what this stage started."""
        if not path:
            raise RunError("no output directory: pass --output DIR")
        if not is_main_process():
            return ReadOnlyRun(path, stage)
        run = cls(path, stage)
        exists = run.path.exists() and any(run.path.iterdir())
        if resume:
            if not exists:
                raise RunError(f"{path}: nothing to resume (the directory is empty or missing)")
            manifest = read_manifest(path)
            if manifest.get("stage") != stage:
                raise RunError(f"{path}: holds a {manifest.get('stage')} run, not {stage}")
            if manifest.get("status") == COMPLETE:
                raise RunError(f"{path}: the run is already complete; nothing to resume")
            run.manifest = manifest
            return run
        if exists:
            if not overwrite:
                raise RunError(f"{path}: already exists; pass --overwrite to replace it or --resume to continue it")
            shutil.rmtree(run.path)
        run.path.mkdir(parents=True, exist_ok=True)
        run.fresh = True
        return run

    def write(self, **fields: Any) -> None:
        self.manifest.update(fields)
        write_json_atomic(self.path / MANIFEST, self.manifest)

    def start(self, cfg_dict: dict[str, Any], **fields: Any) -> None:
        if self.fresh:
            self.manifest = {"align_manifest": 1, "stage": self.stage, "created": now()}
        self.write(status=RUNNING, config=cfg_dict, versions=library_versions(), command=sys.argv, **fields)

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
        if not keep_checkpoints:
            shutil.rmtree(self.checkpoints, ignore_errors=True)
        self.write(status=COMPLETE, finished=now(), metrics=metrics)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None or self.manifest.get("status") == COMPLETE:
            return
        if self.fresh and not (self.checkpoints.exists() and any(self.checkpoints.iterdir())):
            shutil.rmtree(self.path, ignore_errors=True)  # nothing worth keeping: leave no half-written run
            return
        if (self.path / MANIFEST).exists():
            self.write(status=INTERRUPTED, error=f"{exc_type.__name__}: {exc}")
            print(f"[align] run interrupted; continue it with --resume --output {self.path}", file=sys.stderr)


class ReadOnlyRun(Run):
    """What ranks other than 0 hold: the same interface, writing nothing."""

    def write(self, **fields: Any) -> None:
        self.manifest.update(fields)

    def finish(self, metrics: dict[str, Any], keep_checkpoints: bool = False) -> None:
        self.manifest.update(status=COMPLETE, metrics=metrics)

    def __exit__(self, exc_type, exc, tb) -> None:
        return None
