"""Two processes on a CPU (gloo), launched by torchrun as `accelerate launch` does for several GPUs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from align import models

from test_ppo import PROMPTS
from test_sft import qa_rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.path.dirname(__file__)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "align", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def test_sft_and_ppo_in_two_processes(tiny_model, tmp_path):
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in qa_rows(8)))  # 48 rows
    common = ["--model", tiny_model, "--data", str(tmp_path / "qa.jsonl"), "--batch-size", "4", "--no-packing",
              "--epochs", "1", "--learning-rate", "5e-3", "--logging-steps", "1"]
    done = torchrun(["sft", *common, "--output", str(tmp_path / "sft2")], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((tmp_path / "sft2" / "align.json").read_text())
    # 48 rows, 4 per process per step, 2 processes: each rank trains on its own half -> 6 steps, not 12
    assert manifest["status"] == "complete" and manifest["metrics"]["steps"] == 6
    assert manifest["metrics"]["loss_end"] < manifest["metrics"]["loss_start"]
    model, tok, _ = models.load_run(str(tmp_path / "sft2"))  # the result reloads
    assert model is not None and (tmp_path / "sft2" / "adapter" / "adapter_model.safetensors").exists()

    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in PROMPTS))
    done = torchrun(["ppo", "--from", str(tmp_path / "sft2"), "--reward", "rewards:share_of_a", "--prompts",
                     str(tmp_path / "prompts.jsonl"), "--output", str(tmp_path / "ppo2"), "--steps", "3",
                     "--rollout-batch-size", "4", "--mini-batch-size", "4", "--micro-batch-size", "4",
                     "--max-new-tokens", "6", "--save-steps", "0", "--sample-steps", "0"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = [json.loads(x) for x in (tmp_path / "ppo2" / "logs.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logs] == [1, 2, 3]  # written once, by rank 0
    assert json.loads((tmp_path / "ppo2" / "align.json").read_text())["status"] == "complete"


def test_accelerate_launch_runs_a_stage(tiny_model, tmp_path):
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in qa_rows(2)))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--cpu", "-m", "align", "sft",
           "--model", tiny_model, "--data", str(tmp_path / "qa.jsonl"), "--max-steps", "2", "--output",
           str(tmp_path / "run")]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "align.json").read_text())["status"] == "complete"
