"""Throughput of align's stages on random-initialised models, printed as a table and written as JSON.

    python bench/bench.py --sizes 135m 1.7b --stages sft rm dpo ppo --out bench.json     (GPU)
    python bench/bench.py --sizes tiny --stages sft ppo                                  (CPU smoke run)

Each stage runs through align's own code path with its defaults (what a user gets without tuning), on
synthetic variable-length text shaped like ../shared/bench/trl_baseline.py (prompt 32-192 words, answer
32-384 for SFT / 32-256 for pairs). Reported: non-padding tokens/s, samples/s (PPO: episodes/s, rollout
and update tokens/s separately), model FLOP utilisation against a matmul peak measured on the same device
in the same run, and peak memory. Speed does not depend on weight values, so no real weights are needed.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

SHAPES = {  # SmolLM2 family shapes, plus an 8B (Llama-3-8B) shape and a tiny one for CPU smoke runs
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2),
    "135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3),
    "360m": dict(hidden_size=960, intermediate_size=2560, num_hidden_layers=32, num_attention_heads=15, num_key_value_heads=5),
    "1.7b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32, num_key_value_heads=32),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8),
}
WORDS = ("the of and to in is was for on that with as by at from his her this which or an be are not have had "
         "model reward policy human answer question explain simple because people time water light city small "
         "large write story code function value train data learn better helpful honest harmless world").split()
SHARED_TOK = Path(__file__).resolve().parents[2] / "shared" / "bench" / "tok"


def words(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def write_data(folder: Path, n: int, scale: float) -> dict[str, str]:
    """Synthetic SFT rows, preference pairs and prompts (lengths scaled down for CPU smoke runs)."""
    rng = random.Random(0)
    s = lambda lo, hi: (max(1, int(lo * scale)), max(2, int(hi * scale)))  # noqa: E731
    files = {"sft": [{"prompt": words(rng, *s(32, 192)), "completion": words(rng, *s(32, 384))} for _ in range(n)],
             "pairs": [{"prompt": words(rng, *s(32, 192)), "chosen": words(rng, *s(32, 256)),
                        "rejected": words(rng, *s(32, 256))} for _ in range(n)],
             "prompts": [{"prompt": words(rng, *s(32, 192))} for _ in range(n)]}
    out = {}
    for name, rows in files.items():
        out[name] = str(folder / f"{name}.jsonl")
        Path(out[name]).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def make_model(folder: Path, size: str) -> tuple[str, int]:
    """A random-initialised Llama in the given shape with the SmolLM2 tokenizer (or an offline one)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if SHARED_TOK.exists():
        tok = AutoTokenizer.from_pretrained(SHARED_TOK)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from conftest import build_tokenizer

        tok = build_tokenizer(folder)
    cfg = LlamaConfig(vocab_size=len(tok), max_position_embeddings=4096, tie_word_embeddings=True, **SHAPES[size])
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    n_params = sum(p.numel() for p in model.parameters())  # tied: the embedding counts once, as the LM head
    head = model.get_output_embeddings().weight.numel()
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    del model
    return str(folder), n_params, head


def matmul_peak() -> float:
    """Measured dense matmul FLOP/s on this device (bf16 on a GPU, fp32 on a CPU): the MFU denominator."""
    cuda = torch.cuda.is_available()
    n, dtype = (8192, torch.bfloat16) if cuda else (2048, torch.float32)
    a = torch.randn(n, n, dtype=dtype, device="cuda" if cuda else "cpu")
    b = torch.randn_like(a)
    for _ in range(3):
        a @ b
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sync()
    reps, t = (50 if cuda else 5), time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def peak_memory_gib() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2 ** 30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB -> GiB (whole process)


def run_stage(stage: str, model_dir: str, files: dict[str, str], out: Path, steps: int, cuda: bool) -> dict:
    from align import config, dpo, ppo, rm, sft

    common = dict(model=model_dir, output=str(out), overwrite=True, logging_steps=max(1, steps // 2),
                  save_steps=10 ** 6)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    if stage == "ppo":
        cfg = config.build(config.PPOConfig, flags=dict(common, prompts=[files["prompts"]], reward="bench.bench:length_reward",
                                                        steps=steps, max_new_tokens=128 if cuda else 16,
                                                        max_prompt_length=256, sample_steps=0, save_steps=0,
                                                        rollout_batch_size=16 if cuda else 4,
                                                        mini_batch_size=8 if cuda else 4, micro_batch_size=8 if cuda else 4))
        manifest = ppo.run(cfg)
        logs = [json.loads(x) for x in (out / "logs.jsonl").read_text().splitlines()][1:] or \
            [json.loads(x) for x in (out / "logs.jsonl").read_text().splitlines()]
        t = sum(x["time/generate"] + x["time/update"] for x in logs)
        return {"episodes_per_s": cfg.rollout_batch_size * len(logs) / t,
                "rollout_tokens_per_s": sum(x["rollout_tokens_per_s"] for x in logs) / len(logs),
                "update_tokens_per_s": sum(x["update_tokens_per_s"] for x in logs) / len(logs),
                "tokens_per_s": sum(x["update_tokens_per_s"] for x in logs) / len(logs), "steps": manifest["metrics"]["steps"]}
    module, cls, data = {"sft": (sft, config.SFTConfig, files["sft"]), "rm": (rm, config.RMConfig, files["pairs"]),
                         "dpo": (dpo, config.DPOConfig, files["pairs"])}[stage]
    cfg = config.build(cls, flags=dict(common, data=[data], max_steps=steps, truncate=True) if stage == "sft"
                       else dict(common, data=[data], max_steps=steps))
    m = module.run(cfg)["metrics"]
    return {"tokens_per_s": m["tokens_per_s"], "steps": m["steps"], "seconds": m["train_runtime"]}


def length_reward(prompts: list[str], responses: list[str]) -> list[float]:
    """A stand-in reward for PPO speed runs (its cost is negligible, like an RM pass would not be)."""
    return [len(r) / 100 for r in responses]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["135m", "360m", "1.7b"], choices=list(SHAPES))
    parser.add_argument("--stages", nargs="+", default=["sft", "rm", "dpo", "ppo"])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", default="bench.json")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    peak = matmul_peak()
    print(f"device: {torch.cuda.get_device_name() if cuda else 'cpu'}; measured matmul peak {peak / 1e12:.1f} TFLOP/s",
          flush=True)
    results = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / "model").mkdir()
            model_dir, n_params, head = make_model(tmp / "model", size)
            files = write_data(tmp, 512 if cuda else 64, 1.0 if cuda else 0.1)
            for stage in args.stages:
                t0 = time.perf_counter()
                try:
                    r = run_stage(stage, model_dir, files, tmp / stage, args.steps, cuda)
                except Exception as e:  # report and go on to the next measurement
                    r = {"error": repr(e)[:300]}
                # LoRA without recompute: ~4N FLOP per token (forward 2N, backward through activations 2N);
                # a reward model has no LM head (its score head is one row)
                flops_per_token = 4 * (n_params - head if stage == "rm" else n_params)
                r.update(stage=stage, size=size, params=n_params, wall_s=time.perf_counter() - t0,
                         mfu=(r["tokens_per_s"] * flops_per_token / peak) if r.get("tokens_per_s") else None,
                         peak_gib=peak_memory_gib())
                results.append(r)
                print("RESULT " + json.dumps(r), flush=True)
    print("\n| stage | size | tokens/s | PPO episodes/s | rollout tok/s | update tok/s | MFU | peak GiB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        f = lambda k, fmt="{:.0f}": fmt.format(r[k]) if r.get(k) is not None else "-"  # noqa: E731
        print(f"| {r['stage']} | {r['size']} | {f('tokens_per_s')} | {f('episodes_per_s', '{:.2f}')} | "
              f"{f('rollout_tokens_per_s')} | {f('update_tokens_per_s')} | {f('mfu', '{:.1%}')} | {f('peak_gib', '{:.2f}')} |")
    Path(args.out).write_text(json.dumps({"device": torch.cuda.get_device_name() if cuda else "cpu",
                                          "peak_flops": peak, "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
