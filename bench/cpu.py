"""align vs plain TRL on this CPU, every stage, in one run: the side-by-side table of the CPU speed issue.

    python bench/cpu.py [--steps 6] [--ppo-steps 4] [--only sft rm ...] [--skip-trl] [--tuned sft rm dpo ppo]

One job at a time (two cores: anything beside it ruins the figures). For each stage it runs, in this order:
align with its defaults (`--dtype auto`), plain TRL with a user's defaults and plain TRL hand-tuned
(bench/trl_cpu.py). Same model (the embedded SmolLM2-135M, LoRA r16 all-linear), same data, same shapes:
    sft   data/sft_train.jsonl, batch 8, max_length 512
    rm    HH-RLHF helpful pairs (../shared/data/preference), batch 16, max_length 512
    dpo   the same pairs, batch 8, max_length 512 (align: prompts cut to their last 256 tokens; TRL truncates
          the whole sequence)
    ppo   data/prompts_train.jsonl, 16 rollouts x 32-token answers, a reward model sharing the base
          (align ppo's defaults otherwise; then with --value-model policy, and with it at one epoch: one
          policy forward/backward per completion, as RLOO) beside TRL's RLOOTrainer at 16 completions x 32 tokens
Steps 2..N are timed. Tokens are non-padding tokens trained on. MFU counts 4 x parameters FLOPs per trained
token (forward + input gradients through the frozen base; LoRA's own weights and attention left out: a lower
bound) against the bf16 and fp32 matmul peaks measured at the start of the same run. Tokens are the
conversations' tokens on both sides: with align's prefix sharing (RM, DPO) a prompt's tokens run once for its
responses but count once per response, so their MFU is the effective one. Peak RSS per process.
PPO's MFU is per phase, from the FLOPs each phase must do at the iteration's token counts (the layers on every
token of every pass, the LM head only on answer tokens, 2 x forward for a forward + input gradients), and the
table gives the time an iteration would take were every phase at the bf16 peak: the floor for those shapes.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from align.models import cpu_model

ROOT = Path(__file__).resolve().parents[1]
HH = ROOT.parent / "shared" / "data" / "preference" / "hh_helpful_rejection_sampled_test.jsonl.gz"
ALIGN = [sys.executable, "-m", "align"]
PARAMS = 134.5e6  # SmolLM2-135M
HEAD = 49152 * 576  # its (tied) LM head: run on the positions whose next token counts, not on every position


def matmul_peak(dtype: torch.dtype, n: int = 2048, seconds: float = 2.0) -> float:
    """FLOP/s of n^2 matmuls over ~`seconds` (a CPU without bf16 instructions runs bf16 ~100x slower than
    fp32: a fixed count of products would take minutes there)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    t = time.perf_counter()
    a @ b  # warm-up, and the time of one
    reps = max(1, min(20, int(seconds / (time.perf_counter() - t))))
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def cpu_name() -> str:
    """The CPU model and its bf16 instructions: AMX runs bf16 matmuls ~7x fp32, AVX512-BF16 alone ~3x, so
    figures from two machines of the same size differ by more than any change measured here."""
    flags = [f for f, probe in (("AMX", "_is_amx_tile_supported"), ("AVX512-BF16", "_is_avx512_bf16_supported"))
             if getattr(torch.cpu, probe, lambda: False)()]
    return f"{cpu_model()} ({', '.join(flags) or 'no bf16 instructions'})"


def timed(cmd: list[str], log: Path) -> tuple[float, float]:
    """Run a command (output to `log`); (wall seconds, peak RSS GiB) from /usr/bin/time."""
    t = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(["/usr/bin/time", "-f", "MAXRSS_KB %M", *cmd], stdout=f, stderr=subprocess.STDOUT,
                              cwd=ROOT)
    text = log.read_text()
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{text[-3000:]}")
    rss = int(re.findall(r"MAXRSS_KB (\d+)", text)[-1]) / 2 ** 20
    return time.perf_counter() - t, rss


def align_stage(stage: str, args: list[str], steps: int, tmp: Path) -> dict:
    """An align stage run for `steps` optimiser steps; tokens/s over steps 2..N from logs.jsonl timestamps."""
    out = tmp / f"align_{stage}"
    wall, rss = timed([*ALIGN, stage, *args, "--max-steps", str(steps), "--logging-steps", "1", "--save-steps",
                       "1000", "--output", str(out)], tmp / f"align_{stage}.log")
    manifest = json.loads((out / "align.json").read_text())
    logs = [json.loads(x) for x in (out / "logs.jsonl").read_text().splitlines() if "loss" in json.loads(x)]
    span = logs[-1]["time"] - logs[0]["time"]
    tokens = manifest["metrics"]["tokens"] * (steps - 1) / steps
    pairs = {"sft": 8, "rm": 16, "dpo": 8}[stage] * (steps - 1)
    return {"side": "align (defaults)", "stage": stage, "tokens_per_s": tokens / span,
            "samples_per_s": pairs / span, "peak_rss_gib": rss, "wall_s": wall,
            "dtype": manifest.get("dtype") or manifest["config"]["dtype"]}


def trl(stage: str, variant: str, steps: int, tmp: Path, extra: list[str]) -> dict:
    log = tmp / f"trl_{stage}_{variant}.log"
    wall, rss = timed([sys.executable, "bench/trl_cpu.py", stage, variant, "--steps", str(steps), *extra], log)
    res = json.loads(re.findall(r"RESULT (\{.*\})", log.read_text())[-1])
    return {"side": f"plain TRL ({variant})", "stage": stage, "tokens_per_s": res["tokens_per_s"],
            "samples_per_s": res["samples_per_s"], "peak_rss_gib": rss, "wall_s": wall,
            "generated_tokens_per_s": res.get("generated_tokens_per_s")}


def align_ppo(steps: int, tmp: Path, side: str = "defaults", extra: tuple[str, ...] = ()) -> dict:
    """align ppo with its defaults (plus `extra`) at 32-token answers, against an RM on the same base (2 RM
    steps: speed does not depend on how good the RM is). Iterations 2..N timed."""
    rm = tmp / "ppo_rm"
    if not (rm / "align.json").exists():
        timed([*ALIGN, "rm", "--model", "smollm2-135m", "--data", "data/pairs_train.jsonl", "--max-steps", "2",
               "--output", str(rm)], tmp / "ppo_rm.log")
    out = tmp / f"align_ppo_{len(extra)}"
    wall, rss = timed([*ALIGN, "ppo", "--model", "smollm2-135m", "--reward", str(rm), "--prompts",
                       "data/prompts_train.jsonl", "--max-new-tokens", "32", "--steps", str(steps), "--save-steps",
                       "0", "--sample-steps", "0", *extra, "--output", str(out)], tmp / f"{out.name}.log")
    logs = [json.loads(x) for x in (out / "logs.jsonl").read_text().splitlines()][1:]
    it = [x["time/generate"] + x["time/experience"] + x["time/update"] for x in logs]
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    cfg = json.loads((out / "align.json").read_text())["config"]
    n, epochs = cfg["rollout_batch_size"], cfg["ppo_epochs"]
    gen = mean([x["response_length"] * n / x["time/generate"] for x in logs])
    update_s = mean([x["time/update"] for x in logs])
    tokens = mean([x["update_tokens_per_s"] * x["time/update"] / epochs for x in logs])  # prompt + answer, a batch
    answers = mean([x["response_length"] * n for x in logs])
    body, head = 2 * (PARAMS - HEAD), 2 * HEAD  # forward FLOPs per token through the layers, the LM head
    value = 0 if cfg["value_model"] == "policy" else 1  # its own adapter: one more pass over the layers
    flops = {"generate": body * tokens + head * answers,  # prefill and decoding; logits for the answers only
             "experience": body * tokens * (3 + value) + head * answers * 2,  # policy (+ value), reference, RM
             "update": epochs * 2 * (body * tokens * (1 + value) + head * answers)}  # forward + input gradients
    return {"side": f"align ppo ({side})", "stage": "ppo", "samples_per_s": n / mean(it), "iteration_s": mean(it),
            "generate_s": mean([x["time/generate"] for x in logs]),
            "experience_s": mean([x["time/experience"] for x in logs]),
            "update_s": update_s, "generated_tokens_per_s": gen,
            "update_tokens_per_s": mean([x["update_tokens_per_s"] for x in logs]), "peak_rss_gib": rss,
            "wall_s": wall, "tokens_per_iteration": tokens, "answer_tokens_per_iteration": answers,
            "flops_per_iteration": flops}


def ppo_floor(r: dict, peaks: dict[str, float]) -> str:
    """Each PPO phase's MFU of the bf16 peak, and the iteration's time were every phase at that peak: the
    least time these shapes can take on this CPU, whatever the code does."""
    flops = r.get("flops_per_iteration")
    if not flops:
        return ""
    peak = max(peaks.values())
    mfu = ", ".join(f"{k} {100 * f / r[f'{k}_s'] / peak:.0f}%" for k, f in flops.items())
    return f"; MFU {mfu}; at the peak: {sum(flops.values()) / peak:.1f} s an iteration"


def table(rows: list[dict], peaks: dict[str, float]) -> str:
    lines = ["| stage | side | tokens/s | samples/s | MFU of bf16 peak | MFU of fp32 peak | peak RSS GiB | notes |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        tps = r.get("tokens_per_s")
        # bf16 on a CPU without bf16 instructions (~100x slower than fp32) is no peak to measure against
        mfu = {k: f"{100 * 4 * PARAMS * tps / v:.0f}%" if tps and v > peaks["fp32"] / 2 else "" for k, v in peaks.items()}
        notes = (f"iteration {r['iteration_s']:.1f} s = generate {r['generate_s']:.1f} + experience "
                 f"{r['experience_s']:.1f} + update {r['update_s']:.1f}; rollout {r['generated_tokens_per_s']:.0f} "
                 f"tok/s{ppo_floor(r, peaks)}" if "iteration_s" in r else
                 f"{r['generated_tokens_per_s']:.1f} generated tok/s" if r.get("generated_tokens_per_s") else "")
        lines.append(f"| {r['stage']} | {r['side']} | {tps:.0f} | {r['samples_per_s']:.2f} | {mfu['bf16']} | "
                     f"{mfu['fp32']} | {r['peak_rss_gib']:.2f} | {notes} |" if tps else
                     f"| {r['stage']} | {r['side']} | | {r['samples_per_s']:.2f} | | | {r['peak_rss_gib']:.2f} | "
                     f"{notes} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--ppo-steps", type=int, default=4)
    p.add_argument("--only", nargs="+", default=["sft", "rm", "dpo", "ppo"])
    p.add_argument("--skip-trl", action="store_true")
    p.add_argument("--tuned", nargs="*", default=["sft"], help="stages that also get hand-tuned plain TRL (the "
                   "issue's targets: SFT against both, the others against a user's defaults)")
    p.add_argument("--out", default="bench/cpu_results.json")
    a = p.parse_args()
    peaks = {"bf16": matmul_peak(torch.bfloat16), "fp32": matmul_peak(torch.float32)}
    cpu = cpu_name()
    print(f"{cpu}; matmul peak (2048^2, {torch.get_num_threads()} threads): bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s, "
          f"fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s", flush=True)
    data = {"sft": ["--model", "smollm2-135m", "--data", "data/sft_train.jsonl", "--max-length", "512"],
            "rm": ["--model", "smollm2-135m", "--data", str(HH), "--max-length", "512"],
            "dpo": ["--model", "smollm2-135m", "--data", str(HH), "--max-length", "512", "--max-prompt-length", "256"]}
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="align-bench-") as tmp:
        for stage in a.only:
            sides = [] if a.skip_trl else ["default"] + (["tuned"] if stage in a.tuned else [])
            runs = [lambda: align_ppo(a.ppo_steps, Path(tmp)),
                    lambda: align_ppo(a.ppo_steps, Path(tmp), "--value-model policy", ("--value-model", "policy")),
                    lambda: align_ppo(a.ppo_steps, Path(tmp), "--value-model policy --ppo-epochs 1: RLOO's passes",
                                      ("--value-model", "policy", "--ppo-epochs", "1"))] \
                if stage == "ppo" else \
                [lambda: align_stage(stage, data[stage], a.steps, Path(tmp))]
            runs += [lambda v=v: trl("rloo" if stage == "ppo" else stage, v, a.ppo_steps if stage == "ppo" else a.steps,
                                     Path(tmp), []) for v in sides]
            for measure in runs:
                try:
                    rows.append(measure())
                    print(table(rows[-1:], peaks).splitlines()[-1], flush=True)
                except SystemExit as e:  # one failed side does not lose the others
                    print(e, file=sys.stderr, flush=True)
                Path(a.out).write_text(json.dumps({"cpu": cpu, "peaks_flops": peaks, "threads": torch.get_num_threads(),
                                                   "rows": rows, "date": time.strftime("%Y-%m-%d %H:%M")},
                                                  indent=2) + "\n")
    print("\n" + table(rows, peaks))


if __name__ == "__main__":
    main()
