"""Small sweeps behind align's rm / dpo / ppo defaults, on the HH-RLHF split of recipes/hh-helpful.yaml, CPU-sized.

    python bench/quality/sweep.py rm dpo ppo          # ~40 minutes on a 2-core CPU, one job at a time
    python bench/quality/sweep.py ppo --only lr1e-4_ep4_kl0.05

Every point runs `align` through its CLI from the embedded default (what a user gets), with the recipe's
split: train on the first rows of hh_helpful_rejection_sampled_test, measure on the last 100 rows of
hh_helpful_online_test (the held-out pairs nothing trains on). What each point measures:
    rm   pairwise accuracy and mean margin on the held-out pairs (align eval), train seconds; trained on the
         policy side's file (across files, as the recipe's PPO reward model) or on the judge's (the held-out
         pairs' distribution: learning rate and data size where there is a signal to learn); the points trained on
         its first 320 rows are also scored on its rows 320-620 (WIDE: 300 pairs, +-0.057 at 95% against +-0.10)
    dpo  implicit-reward accuracy and eval loss on the held-out pairs (the judge320 points: on WIDE), train seconds
    ppo  on a smooth rule reward (10 x the share of the letter 'o' in the answer: tests/rewards.py-style sanity
         reward, bench/quality/rewards.py) and 32-token answers to the project's prompts: reward of the first
         and last iterations, KL to the start (nats per answer), reward gained per nat of KL
Results are appended to bench/quality/sweep.jsonl (one JSON line per point, with its command) as each finishes;
bench/quality/RESULTS.md is written by hand from them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HH = ROOT.parent / "shared" / "data" / "preference"
TRAIN = f"{HH}/hh_helpful_rejection_sampled_test.jsonl.gz"
HELD_OUT = f"{HH}/hh_helpful_online_test.jsonl.gz[-100:]"
# 99 held-out pairs leave +-0.10 at 95%: the RM points trained on the judge file's first 320 rows are also scored on
# its next 300 (never trained on by those points; +-0.057), which separates what the last 100 alone cannot
WIDE = f"{HH}/hh_helpful_online_test.jsonl.gz[320:620]"
OUT = ROOT / "runs" / "sweep"
RESULTS = Path(__file__).with_name("sweep.jsonl")
SFT = OUT / "sft"  # the recipe's SFT stage, for the points that start an RM from SFT
SFT_ARGS = ["sft", "--model", "smollm2-135m", "--data", TRAIN, "--max-length", "512", "--truncate", "--batch-size", "8",
            "--max-steps", "25", "--logging-steps", "5", "--save-steps", "0", "--output", str(SFT)]

JUDGE_TRAIN = f"{HH}/hh_helpful_online_test.jsonl.gz"  # the judge's file: the held-out pairs' distribution
RM_BASE = ["--max-length", "320", "--batch-size", "16", "--logging-steps", "4"]
DPO_BASE = ["--data", f"{TRAIN}[:160]", "--eval-data", HELD_OUT, "--max-length", "320", "--max-prompt-length", "192",
            "--batch-size", "8", "--logging-steps", "5"]
PPO_BASE = ["--prompts", str(ROOT / "data" / "prompts_train.jsonl"), "--reward", "rewards:share_of_o",
            "--steps", "10", "--max-new-tokens", "32", "--sample-steps", "0", "--save-steps", "0"]
POINTS = {  # stage -> name -> extra flags
    "rm": {  # across files: the first 256 pairs of the policy side's file (at chance on the held-out pairs)
           "lr2e-4": ["--data", f"{TRAIN}[:256]", "--learning-rate", "2e-4"],
           "lr1e-3": ["--data", f"{TRAIN}[:256]", "--learning-rate", "1e-3"],
           "lr5e-5": ["--data", f"{TRAIN}[:256]", "--learning-rate", "5e-5"],
           # within the held-out pairs' distribution: the judge's first 320 pairs, then all 1,037 of them
           "judge320_lr5e-5": ["--data", f"{JUDGE_TRAIN}[:320]", "--learning-rate", "5e-5"],
           "judge320_lr2e-4": ["--data", f"{JUDGE_TRAIN}[:320]", "--learning-rate", "2e-4"],
           "judge320_lr1e-3": ["--data", f"{JUDGE_TRAIN}[:320]", "--learning-rate", "1e-3"],
           "judge1037_lr2e-4": ["--data", f"{JUDGE_TRAIN}[:-100]", "--learning-rate", "2e-4"],
           # what else the defaults rest on, each against judge320_lr2e-4 (re-run for its WIDE score): from the
           # recipe's SFT instead of the base, two epochs, max_length 256 (the recipe's) and 512
           "judge320_from_sft": ["--data", f"{JUDGE_TRAIN}[:320]", "--from", str(SFT)],
           "judge320_ep2": ["--data", f"{JUDGE_TRAIN}[:320]", "--epochs", "2"],
           "judge320_from_sft_ep2": ["--data", f"{JUDGE_TRAIN}[:320]", "--from", str(SFT), "--epochs", "2"],
           "judge320_len256": ["--data", f"{JUDGE_TRAIN}[:320]", "--max-length", "256"],
           "judge320_len512": ["--data", f"{JUDGE_TRAIN}[:320]", "--max-length", "512"]},
    "dpo": {"lr1e-4_b0.1": ["--learning-rate", "1e-4", "--beta", "0.1"],
            "lr5e-4_b0.1": ["--learning-rate", "5e-4", "--beta", "0.1"],
            "lr1e-4_b0.5": ["--learning-rate", "1e-4", "--beta", "0.5"],
            # epochs where there is a signal: from the recipe's SFT on the judge file's first 320 rows (the held-out
            # pairs' kind), scored on its next 300
            "judge320_from_sft_ep1": ["--from", str(SFT), "--data", f"{JUDGE_TRAIN}[:320]", "--eval-data", WIDE],
            "judge320_from_sft_ep2": ["--from", str(SFT), "--data", f"{JUDGE_TRAIN}[:320]", "--eval-data", WIDE,
                                      "--epochs", "2"]},
    "ppo": {"lr1e-4_ep4_kl0.05": ["--learning-rate", "1e-4", "--ppo-epochs", "4", "--kl-coef", "0.05"],
            "lr1e-4_ep2_kl0.05": ["--learning-rate", "1e-4", "--ppo-epochs", "2", "--kl-coef", "0.05"],
            "lr3e-4_ep2_kl0.05": ["--learning-rate", "3e-4", "--ppo-epochs", "2", "--kl-coef", "0.05"],
            "lr3e-4_ep2_kl0.2": ["--learning-rate", "3e-4", "--ppo-epochs", "2", "--kl-coef", "0.2"],
            "lr1e-4_ep4_kl0.05_vpolicy": ["--learning-rate", "1e-4", "--ppo-epochs", "4", "--kl-coef", "0.05",
                                          "--value-model", "policy"]},
}


def align(*args: str, cwd: Path = ROOT) -> None:
    cmd = [sys.executable, "-m", "align", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=cwd, env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).parent)})


def manifest(run: Path) -> dict:
    return json.loads((run / "align.json").read_text())


def merged(base: list[str], flags: list[str]) -> list[str]:
    """The stage's base flags with the point's own replacing those of the same name (all take one value)."""
    named = {f for f in flags if f.startswith("--")}
    keep = [x for i in range(0, len(base), 2) if base[i] not in named for x in base[i:i + 2]]
    return keep + flags


def point(stage: str, name: str, flags: list[str]) -> dict:
    run = OUT / stage / name
    base = {"rm": RM_BASE, "dpo": DPO_BASE, "ppo": PPO_BASE}[stage]
    if str(SFT) in flags and not (SFT / "align.json").exists():
        align(*SFT_ARGS)
    start = [] if "--from" in flags else ["--model", "smollm2-135m"]
    args = [stage, *start, *merged(base, flags), "--output", str(run), "--overwrite"]
    t = time.time()
    align(*args)
    wall = time.time() - t
    m = manifest(run)["metrics"]
    result = {"stage": stage, "name": name, "command": "align " + " ".join(args), "wall_s": round(wall, 1),
              "train_s": m.get("train_runtime")}
    if stage == "rm":
        align("eval", str(run), "--pairs", HELD_OUT, "--output", str(run / "eval"))
        ev = json.loads((run / "eval" / "eval.json").read_text())["results"][0]
        result.update(accuracy=ev["accuracy"], mean_margin=ev["mean_margin"], pairs=ev["pairs"],
                      loss_start=m.get("loss_start"), loss_end=m.get("loss_end"))
        if f"{JUDGE_TRAIN}[:320]" in flags:
            align("eval", str(run), "--pairs", WIDE, "--output", str(run / "eval_wide"))
            wide = json.loads((run / "eval_wide" / "eval.json").read_text())["results"][0]
            result.update(wide_accuracy=wide["accuracy"], wide_margin=wide["mean_margin"], wide_pairs=wide["pairs"])
    elif stage == "dpo":
        result.update(accuracy=m.get("eval_implicit_accuracy"), eval_loss=m.get("eval_loss"),
                      loss_start=m.get("loss_start"), loss_end=m.get("loss_end"))
    else:
        logs = [json.loads(x) for x in (run / "logs.jsonl").read_text().splitlines()]
        rewards, kls = [x["reward/raw"] for x in logs], [x["kl"] for x in logs]
        first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
        kl = sum(kls[-3:]) / 3
        result.update(reward_first3=first, reward_last3=last, kl_last3=kl,
                      gain_per_nat=(last - first) / kl if kl > 0 else None, rewards=rewards, kls=kls)
    with RESULTS.open("a") as f:
        f.write(json.dumps(result) + "\n")
    print("RESULT", json.dumps({k: v for k, v in result.items() if k not in ("rewards", "kls")}), flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stages", nargs="+", choices=list(POINTS))
    ap.add_argument("--only", nargs="*", help="point names to run (default: all of each stage)")
    args = ap.parse_args()
    for stage in args.stages:
        for name, flags in POINTS[stage].items():
            if not args.only or name in args.only:
                point(stage, name, flags)


if __name__ == "__main__":
    main()
