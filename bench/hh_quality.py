"""Reward-model / DPO quality on real HH-RLHF pairs: `align rm|dpo` with its defaults, side by side with
plain TRL as measured by the shared anchors (../shared/bench/{rm,dpo}_quality_anchor.py).

    python bench/hh_quality.py rm  --trl                      # whole files: a GPU run
    python bench/hh_quality.py dpo --trl --trl-lr 5e-6 --limit-train 256 --limit-eval 200   # CPU-sized

Both sides get the same rows: the first --limit-train rows of TRAIN and --limit-eval rows of EVAL are
written to OUT/data as HH-format files (train on one file, evaluate on the other). align runs through its
CLI from the embedded default (what a user gets); extra align flags go after `--`. Prints a table and
writes OUT/results.json. Accuracy: pairwise (RM) or implicit-reward (DPO) accuracy on the eval rows.
Plain TRL drops pairs over its max_length 512 in training and evaluation; align keeps them (left
truncation), so each side's own eval count is reported.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PREF = SHARED / "data" / "preference"


def head(src: Path, n: int | None, dst: Path) -> int:
    """The first n rows of a (gzipped) JSONL file, as is, gzipped (the anchors read only .gz)."""
    opener = gzip.open if src.suffix == ".gz" else open
    with opener(src, "rt") as f:
        lines = [line for line in f if line.strip()][:n]
    with gzip.open(dst, "wt") as f:
        f.write("".join(lines))
    return len(lines)


def run_align(stage: str, train: Path, eval_: Path, out: Path, flags: list[str]) -> dict:
    cmd = [sys.executable, "-m", "align", stage, "--model", "smollm2-135m", "--data", str(train),
           "--eval-data", str(eval_), "--output", str(out / f"align-{stage}"), "--overwrite", *flags]
    print("+", " ".join(cmd), flush=True)
    t = time.time()
    subprocess.run(cmd, check=True)
    wall = time.time() - t
    manifest = json.loads((out / f"align-{stage}" / "align.json").read_text())
    m, counts = manifest["metrics"], manifest["data"].get("counts", {})
    pairs = counts["train"]["pairs"]
    acc = m.get("eval_accuracy", m.get("eval_implicit_accuracy"))
    return {"side": "align", "accuracy": acc, "eval_pairs": counts["eval"].get("pairs"),
            "train_pairs": pairs, "train_s": round(m["train_runtime"], 1), "wall_s": round(wall, 1),
            "pairs_per_s": round(pairs / m["train_runtime"], 3) if pairs and m["train_runtime"] else None,
            "metrics": m}


def run_trl(stage: str, train: Path, eval_: Path, lr: float | None) -> dict:
    from align import models

    anchor = SHARED / "bench" / f"{stage}_quality_anchor.py"
    model_dir = models.resolve("smollm2-135m")
    cmd = [sys.executable, str(anchor), model_dir, *([str(lr)] if stage == "dpo" else []), str(train), "--", str(eval_)]
    print("+", " ".join(cmd), flush=True)
    t = time.time()
    proc = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, cwd=anchor.parent)
    print(proc.stdout, end="", flush=True)
    wall = time.time() - t
    line = next(x for x in reversed(proc.stdout.splitlines()) if x.startswith("RESULT "))
    r = json.loads(line[len("RESULT "):])
    if stage == "rm":
        acc, pairs = r["per_file"][eval_.name], r["train_pairs"]
    else:
        acc, pairs = next(iter(r["eval"].values()))["eval_rewards/accuracies"], r["train_pairs"]
    return {"side": f"plain TRL{f' lr {lr:g}' if lr else ''}", "accuracy": acc, "eval_pairs": r.get("eval_pairs"),
            "train_pairs": pairs, "train_s": r["train_s"], "wall_s": round(wall, 1),
            "pairs_per_s": round(pairs / r["train_s"], 3), "metrics": r}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stage", choices=["rm", "dpo"])
    p.add_argument("--train", type=Path, default=PREF / "hh_helpful_rejection_sampled_test.jsonl.gz")
    p.add_argument("--eval", type=Path, default=PREF / "hh_helpful_online_test.jsonl.gz")
    p.add_argument("--limit-train", type=int, default=None, help="first N training rows (default: all)")
    p.add_argument("--limit-eval", type=int, default=None, help="first N eval rows (default: all)")
    p.add_argument("--trl", action="store_true", help="also run plain TRL's anchor on the same rows")
    p.add_argument("--trl-lr", type=float, default=5e-6, help="plain TRL's DPO learning rate (the anchor's 5e-6)")
    p.add_argument("--skip-align", action="store_true")
    p.add_argument("--out", type=Path, default=Path("bench-hh"))
    args, flags = p.parse_known_args()
    flags = [f for f in flags if f != "--"]

    data_dir = args.out / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    train, eval_ = data_dir / "train.jsonl.gz", data_dir / "eval.jsonl.gz"
    n_train, n_eval = head(args.train, args.limit_train, train), head(args.eval, args.limit_eval, eval_)
    print(f"[hh] {args.stage}: train {n_train} rows of {args.train.name}, eval {n_eval} rows of {args.eval.name}",
          flush=True)
    results = []
    if not args.skip_align:
        results.append(run_align(args.stage, train, eval_, args.out, flags))
    if args.trl:
        results.append(run_trl(args.stage, train, eval_, args.trl_lr if args.stage == "dpo" else None))

    print("\n| side | held-out accuracy | eval pairs | train pairs | train s | pairs/s | wall s |\n|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['side']} | {r['accuracy']:.4f} | {r['eval_pairs']} | {r['train_pairs']} | {r['train_s']} | "
              f"{r['pairs_per_s']} | {r['wall_s']} |")
    (args.out / f"results-{args.stage}.json").write_text(json.dumps(
        {"stage": args.stage, "train": str(args.train), "eval": str(args.eval), "train_rows": n_train,
         "eval_rows": n_eval, "align_flags": flags, "results": results}, indent=1))


if __name__ == "__main__":
    main()
