"""`align run RECIPE`: the stages a pipeline recipe lists, each handing its run directory to the next.

    output: runs/quickstart          # each stage writes <output>/<name>
    stages:
      sft: {model: smollm2-135m, data: data/sft_train.jsonl}
      rm:  {from: sft, data: data/pairs_train.jsonl}         # `from`, `reward`, `judge` may name a stage
      ppo: {from: sft, reward: rm, prompts: data/prompts_train.jsonl}
      dpo: {from: sft, data: data/pairs_train.jsonl, stage: dpo}   # `stage:` when the name is not the method
    eval: {prompts: data/prompts_eval.jsonl, pairs: data/pairs_eval.jsonl, judge: rm}   # -> <output>/report/

A stage whose run is complete is skipped on a re-run; an interrupted one resumes. The whole recipe is
validated (unknown keys, types, paths) before anything runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from align import config as C
from align import runs
from align.errors import ConfigError

STAGE_REFS = ("from", "reward", "judge")  # keys whose value may be the name of an earlier stage
PATH_KEYS = ("data", "eval_data", "prompts", "eval_prompts")
EVAL_KEYS = ("prompts", "pairs", "judge", "max_new_tokens")


def run_stage(method: str, cfg: Any) -> Any:
    """Run one stage; its module (and torch) is imported only now, so `align --help` stays fast."""
    import importlib

    return importlib.import_module(f"align.{method}").run(cfg)


def plan(recipe: dict[str, Any], source: str) -> tuple[Path, list[tuple[str, str, Any]]]:
    """Validate a pipeline recipe into (output root, [(name, method, config)]) without running anything."""
    unknown = set(recipe) - {"output", "stages", "eval"}
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {sorted(unknown)} (expected: output, stages, eval)")
    if not isinstance(recipe.get("stages"), dict) or not recipe["stages"]:
        raise ConfigError(f"{source}: 'stages' must map stage names to their settings")
    root = Path(recipe.get("output") or "runs")
    steps, seen = [], {}
    for name, settings in recipe["stages"].items():
        where = f"{source}: stages.{name}"
        settings = dict(settings or {})
        method = settings.pop("stage", name)
        if method not in C.STAGES:
            raise ConfigError(f"{where}: unknown stage '{method}' (one of {', '.join(C.STAGES)}; "
                              f"name it with `stage:` if the key is your own name)")
        for key in STAGE_REFS:
            ref = settings.get(key)
            if isinstance(ref, str) and ref in recipe["stages"]:
                if ref not in seen:
                    raise ConfigError(f"{where}: '{key}: {ref}' names a stage that does not run before it")
                settings[key] = str(seen[ref])
        for key in PATH_KEYS:
            for path in settings.get(key) if isinstance(settings.get(key), list) else [settings.get(key)]:
                if isinstance(path, str) and not Path(path).exists():
                    raise ConfigError(f"{where}: {key} '{path}' does not exist")
        settings.setdefault("output", str(root / name))
        cfg = C.build(C.STAGES[method], settings, source=where)
        seen[name] = Path(cfg.output)
        steps.append((name, method, cfg))
    ev = recipe.get("eval")
    if ev is not None:
        if not isinstance(ev, dict) or set(ev) - set(EVAL_KEYS):
            raise ConfigError(f"{source}: eval takes {', '.join(EVAL_KEYS)}")
        for key in ("prompts", "pairs"):
            if ev.get(key) and not Path(ev[key]).exists():
                raise ConfigError(f"{source}: eval.{key} '{ev[key]}' does not exist")
        if ev.get("judge") and ev["judge"] not in seen and not Path(ev["judge"]).exists():
            raise ConfigError(f"{source}: eval.judge '{ev['judge']}' is neither a stage nor a run directory")
    return root, steps


def select(steps: list, only: list[str] | None, from_stage: str | None) -> list:
    names = [n for n, _, _ in steps]
    for n in (only or []) + ([from_stage] if from_stage else []):
        if n not in names:
            raise ConfigError(f"no stage '{n}' in this recipe (stages: {', '.join(names)})")
    if from_stage:
        steps = steps[names.index(from_stage):]
    return [s for s in steps if not only or s[0] in only]


def run(recipe_path: str, only: list[str] | None = None, from_stage: str | None = None,
        overwrite: bool = False) -> Path:
    recipe = C.read_recipe(recipe_path)
    root, steps = plan(recipe, recipe_path)
    todo = select(steps, only, from_stage)
    for name, method, cfg in todo:
        manifest_path = Path(cfg.output) / runs.MANIFEST
        status = runs.read_manifest(cfg.output).get("status") if manifest_path.exists() else None
        if status == runs.COMPLETE and not overwrite:
            print(f"[align] {name}: complete in {cfg.output}, skipped", flush=True)
            continue
        cfg.resume = status in (runs.RUNNING, runs.INTERRUPTED) and not overwrite
        cfg.overwrite = overwrite
        print(f"[align] {name}: {'resuming' if cfg.resume else 'running'} {method} -> {cfg.output}", flush=True)
        run_stage(method, cfg)
    ev = recipe.get("eval")
    if ev and not only:
        from align import evaluate

        outputs = {name: str(cfg.output) for name, _, cfg in steps}
        judge = outputs.get(ev.get("judge"), ev.get("judge"))
        evaluate.evaluate(list(outputs.values()), ev.get("prompts"), judge, ev.get("pairs"), str(root / "report"),
                          ev.get("max_new_tokens", 64))
    return root
