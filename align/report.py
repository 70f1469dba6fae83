"""The evaluation report: report.md (tables a person reads in a terminal) + PNG plots (curves, reward vs KL)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from align import runs

CURVES = {  # stage -> (metric in logs.jsonl, label), plotted against the step
    "sft": [("loss", "training loss"), ("eval_loss", "eval loss")],
    "rm": [("loss", "training loss"), ("eval_accuracy", "eval pairwise accuracy")],
    "dpo": [("loss", "training loss"), ("eval_rewards/accuracies", "eval implicit-reward accuracy")],
    "ppo": [("reward/raw", "reward"), ("kl", "KL to reference (nats)")],
}


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else ("-" if v is None else str(v))


def tables(out: dict[str, Any]) -> str:
    lines = []
    rms = [r for r in out["results"] if r["kind"] == "reward_model"]
    if rms:
        lines += ["| reward model | pairs | accuracy | mean margin |", "|---|---|---|---|"]
        lines += [f"| {r['run']} | {r['pairs']} | {_fmt(r['accuracy'])} | {_fmt(r['mean_margin'])} |" for r in rms]
        lines.append("")
    pols = [r for r in out["results"] if r["kind"] == "policy"]
    if pols:
        lines += ["Each row compares a policy with its own reference, the model it was trained from (SFT for "
                  "PPO/DPO, the base model for SFT), on the same held-out prompts (greedy answers): the judge's "
                  "mean reward for both, the share of prompts on which the policy's answer scores higher (ties "
                  "count half; +- is 1.96 standard errors over prompts, a 95% interval), the KL of the policy's "
                  "answers to the reference (nats per answer), and both answers' mean length in tokens.", "",
                  "| policy | stage | reference | mean reward | reference reward | win rate vs reference | "
                  "KL to reference | tokens (policy / reference) |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['run']} | {r['stage']} | {r['reference']} | {_fmt(r.get('reward'))} | "
                  f"{_fmt(r.get('reference_reward'))} | {_win(r)} | {_fmt(r['kl_to_reference'])} | "
                  f"{r['response_length']:.1f} / {r.get('reference_length', float('nan')):.1f} |" for r in pols]
    for r in pols:
        if r.get("curve"):
            lines += ["", f"Over training, {r['run']} (snapshots) against {r['reference']}:", "",
                      "| iterations | KL (nats) | sqrt KL | mean reward | win rate | tokens |", "|---|---|---|---|---|---|"]
            lines += [f"| {c['step']} | {_fmt(c['kl_to_reference'])} | {_fmt(max(c['kl_to_reference'], 0) ** 0.5)} | "
                      f"{_fmt(c.get('reward'))} | {_win(c)} | {c['response_length']:.1f} |" for c in r["curve"]]
    return "\n".join(lines)


def _win(r: dict[str, Any]) -> str:
    if r.get("win_rate") is None:
        return "-"
    return f"{r['win_rate']:.3f} +- {1.96 * r.get('win_rate_se', 0.0):.3f}"


def slugs(run_dirs: list[str]) -> dict[str, str]:
    """A file-name part per run: its folder's name, numbered where two runs share it (runs/a/ppo, runs/b/ppo:
    ppo, ppo_2), so that one run's plot never replaces another's."""
    out: dict[str, str] = {}
    for d in dict.fromkeys(run_dirs):
        name, k = Path(d).name, 1
        while (name if k == 1 else f"{name}_{k}") in out.values():
            k += 1
        out[d] = name if k == 1 else f"{name}_{k}"
    return out


def _wall(manifest: dict[str, Any]) -> str:
    seconds = runs.wall_seconds(manifest)
    if seconds is None:
        return "-"
    resumes = len(manifest.get("resumes") or [])
    return f"{seconds / 60:.1f} min" + (f" ({resumes} resume{'s' * (resumes > 1)})" if resumes else "")


def _logs(run_dir: str) -> list[dict[str, Any]]:
    path = Path(run_dir) / "logs.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def plot_curves(run_dir: str, stage: str, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = _logs(run_dir)
    series = [(label, [(x["step"], x[key]) for x in logs if key in x]) for key, label in CURVES.get(stage, [])]
    series = [(label, pts) for label, pts in series if pts]
    if not series:
        return False
    fig, axes = plt.subplots(1, len(series), figsize=(5 * len(series), 3.2), squeeze=False)
    for ax, (label, pts) in zip(axes[0], series):
        ax.plot(*zip(*pts), marker="." if len(pts) < 30 else None)
        ax.set_title(label)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{stage}: {run_dir}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def by_reference(pols: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Policies grouped by the model each is compared with (its reference: the SFT run for DPO/PPO, the base
    model for SFT), in the order they come; only those a judge scored."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in pols:
        if r.get("reward") is not None:
            groups.setdefault(r["reference"], []).append(r)
    return groups


def plot_reward_vs_kl(reference: str, pols: list[dict[str, Any]], path: Path) -> None:
    """Reward against KL for the policies that share one reference, with that reference at KL 0: the points of
    one plot are comparable (the same reference's answers, the same judge, the same prompts)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = Path(reference).name or reference
    shown = reference if len(reference) <= 48 else ".../" + "/".join(Path(reference).parts[-2:])
    fig, ax = plt.subplots(figsize=(5, 4))
    ref = [r["reference_reward"] for r in pols]  # the same greedy answers for each policy: equal up to rounding
    ax.scatter([0.0], [sum(ref) / len(ref)], marker="s", color="gray", label=f"{name} (the reference)")
    for r in pols:
        ax.scatter([r["kl_to_reference"]], [r["reward"]], label=Path(r["run"]).name)
    ax.set_title(f"vs {shown}", fontsize=10)
    ax.set_xlabel(f"KL to {name} (nats per answer)")
    ax.set_ylabel("mean reward (judge)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_reward_vs_sqrt_kl(r: dict[str, Any], path: Path) -> None:
    """Judge reward over a PPO run's snapshots against sqrt(KL) to its reference, as in Gao et al. 2022 ("Scaling
    laws for reward model overoptimization"): where the curve flattens or turns down, optimising the proxy
    reward has stopped helping under the judge."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(0.0, r["reference_reward"], 0)] + [(max(c["kl_to_reference"], 0.0) ** 0.5, c["reward"], c["step"])
                                               for c in r["curve"]]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o")
    for x, y, step in pts:
        ax.annotate(str(step), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_title(f"{Path(r['run']).name}: judge reward over training (labels: iterations)", fontsize=9)
    ax.set_xlabel(f"sqrt KL to {Path(r['reference']).name} (sqrt nats per answer)")
    ax.set_ylabel("mean judge reward")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _prompt_cut(out: dict[str, Any]) -> str:
    cut = max((r.get("truncated_prompts", 0) for r in out["results"]), default=0)
    return (f" Prompts over {out['max_prompt_length']} tokens keep their last ones: {cut} of the held-out prompts."
            if out.get("max_prompt_length") else "")


def write(out: dict[str, Any], manifests: dict[str, dict[str, Any]], folder: Path) -> Path:
    lines = ["# align evaluation report", "",
             f"Judge: `{out['judge']}`; held-out prompts: `{out['prompts']}`; held-out pairs: `{out['pairs']}`."
             + _prompt_cut(out), "",
             tables(out), ""]
    pols = [r for r in out["results"] if r["kind"] == "policy"]
    for i, (reference, group) in enumerate(by_reference(pols).items(), 1):
        name = f"reward_vs_kl_{i}.png"
        plot_reward_vs_kl(reference, group, folder / name)
        lines += [f"### Reward vs KL to {reference}", "",
                  f"{', '.join(Path(r['run']).name for r in group)} against {reference}, the model "
                  f"{'they' if len(group) > 1 else 'it'} started from (at KL 0).", "",
                  f"![reward vs KL to {reference}]({name})", ""]
    slug = slugs(list(manifests) + [r["run"] for r in pols])
    for r in pols:
        if r.get("curve") and r.get("reward") is not None:
            name = f"reward_vs_sqrt_kl_{slug[r['run']]}.png"
            plot_reward_vs_sqrt_kl(r, folder / name)
            lines += [f"### Judge reward vs sqrt(KL) over {r['run']}'s training", "",
                      f"![judge reward vs sqrt KL]({name})", ""]
    lines += ["## Training", "", "Wall time: from the run's creation to its finish, pauses between resumes included.",
              "", "| run | stage | status | wall time | key metrics |", "|---|---|---|---|---|"]
    for run_dir, m in manifests.items():
        keys = ("loss_start", "loss_end", "eval_accuracy", "eval_implicit_accuracy", "reward_start", "reward_end",
                "kl_end", "tokens_per_s", "train_runtime")
        shown = ", ".join(f"{k} {_fmt(m['metrics'][k])}" for k in keys if m.get("metrics", {}).get(k) is not None)
        lines.append(f"| {run_dir} | {m['stage']} | {m['status']} | {_wall(m)} | {shown} |")
    if out.get("wall_s") is not None:
        lines += ["", f"This evaluation took {out['wall_s'] / 60:.1f} min."]
    lines.append("")
    for run_dir, m in manifests.items():
        name = f"curves_{slug[run_dir]}.png"
        if plot_curves(run_dir, m["stage"], folder / name):
            lines += [f"![{m['stage']} curves]({name})", ""]
    for r in pols:
        lines += [f"## Samples: {r['run']} vs its reference", ""]
        for s in r["samples"]:
            rewards = (f" (reward {_fmt(s.get('policy_reward'))} vs {_fmt(s.get('reference_reward'))})"
                       if "policy_reward" in s else "")
            lines += [f"**Prompt:** {s['prompt']}{rewards}", "", f"- policy: {s['policy']}",
                      f"- reference: {s['reference']}", ""]
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
