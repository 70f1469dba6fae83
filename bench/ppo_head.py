"""PPO's LM head per micro-step: autograd's label log-probs (gather + logsumexp, with the logged entropy on the
side) against `ppo_math.label_logprobs` (one Function, hand-written backward), alternating in one process.

    python bench/ppo_head.py [--rows 256] [--reps 8]

The embedded model's shapes: hidden 576, vocabulary 49,152, fp32 head (PPO's), `--rows` answer positions (8
responses x 32 tokens at PPO's defaults). Each side: the head's matmul, log-probs of the labels and the entropy
for the logs, forward, and backward to the hidden states. Prints the median ms of each side, the ratio, and the
largest difference between the two gradients.
"""

from __future__ import annotations

import argparse
import time

import torch

from align import ppo_math

HIDDEN, VOCAB = 576, 49152


def autograd_side(h0, weight, labels):
    h = h0.clone().requires_grad_(True)
    logits = torch.nn.functional.linear(h, weight)
    with torch.no_grad():
        ppo_math.entropy_from_logits(logits)
    ppo_math.logprobs_from_logits(logits, labels).sum().backward()
    return h.grad


def function_side(h0, weight, labels):
    h = h0.clone().requires_grad_(True)
    logprobs, _ = ppo_math.label_logprobs(torch.nn.functional.linear(h, weight), labels, entropy=True)
    logprobs.sum().backward()
    return h.grad


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=256)
    p.add_argument("--reps", type=int, default=8)
    args = p.parse_args()
    torch.manual_seed(0)
    weight, h0 = torch.randn(VOCAB, HIDDEN) * 0.02, torch.randn(args.rows, HIDDEN)
    labels = torch.randint(0, VOCAB, (args.rows,))
    sides = {"autograd": autograd_side, "label_logprobs": function_side}
    times: dict[str, list[float]] = {name: [] for name in sides}
    for f in sides.values():  # warm-up
        f(h0, weight, labels)
    for _ in range(args.reps):
        for name, f in sides.items():
            start = time.perf_counter()
            f(h0, weight, labels)
            times[name].append(time.perf_counter() - start)
    median = {name: sorted(t)[len(t) // 2] * 1000 for name, t in times.items()}
    for name, ms in median.items():
        print(f"{name:16s} {ms:7.1f} ms a micro-step")
    print(f"ratio {median['autograd'] / median['label_logprobs']:.2f}x; largest gradient difference "
          f"{float((autograd_side(h0, weight, labels) - function_side(h0, weight, labels)).abs().max()):.2e}")


if __name__ == "__main__":
    main()
