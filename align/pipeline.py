"""`align run RECIPE`: the stages a pipeline recipe lists, each handing its run directory to the next.

    output: runs/quickstart          # each stage writes <output>/<name>
    stages:
      sft: {model: smollm2-135m, data: data/sft_train.jsonl}
      rm:  {from: sft, data: data/pairs_train.jsonl}         # `from`, `reward`, `judge` may name a stage
      ppo: {from: sft, reward: rm, prompts: data/prompts_train.jsonl}
      dpo: {from: sft, data: data/pairs_train.jsonl, stage: dpo}   # `stage:` when the name is not the method
    eval: {prompts: data/prompts_eval.jsonl, pairs: data/pairs_eval.jsonl, judge: rm}   # -> <output>/report/

A stage whose run is complete is skipped on a re-run; an interrupted one resumes; a failed one (its training
diverged) runs again from the start. The whole recipe is validated before any stage runs: unknown keys,
types, every value's range (the config classes), stage references and paths, each stage's required inputs,
and a PPO stage's rollout batch against its prompt file's rows.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from pathlib import Path
from typing import Any

from align import config as C
from align import data
from align import runs
from align.errors import ConfigError

STAGE_REFS = ("from", "reward", "judge")  # keys whose value may be the name of an earlier stage
PATH_KEYS = ("data", "eval_data", "prompts", "eval_prompts")
EVAL_KEYS = ("prompts", "pairs", "judge", "max_new_tokens", "max_prompt_length", "comparison_prompts")


def run_stage(method: str, cfg: Any) -> Any:
    """Run one stage; its module (and torch) is imported only now, so `align --help` stays fast."""
    import importlib

    return importlib.import_module(f"align.{method}").run(cfg)


def check_inputs(method: str, cfg: Any, where: str, required: bool = True) -> None:
    """What a stage needs that no default gives (`required`: a single-stage recipe may leave it to flags), and
    the checks that need its data: a PPO stage's prompt file is read (its rows checked) and must hold at
    least rollout_batch_size prompts per process."""
    if required and not cfg.model and not cfg.from_run:
        raise ConfigError(f"{where}: no model: give 'model' (hub id, path or 'smollm2-135m') or 'from' (a run "
                          f"directory or an earlier stage)")
    needed = {"ppo": ("prompts", "reward")}.get(method, ("data",))
    for key in needed if required else ():
        if not getattr(cfg, key):
            raise ConfigError(f"{where}: '{key}' is required for a {method} stage")
    if method == "ppo" and cfg.prompts:

        rows = len(data.load_prompts(cfg.prompts, cfg.comparison_prompts).rows)
        processes = int(os.environ.get("WORLD_SIZE", "1"))
        if cfg.rollout_batch_size * processes > rows:
            raise ConfigError(f"{where}: rollout_batch_size ({cfg.rollout_batch_size}"
                              + (f" x {processes} processes" if processes > 1 else "")
                              + f") exceeds the {rows} prompts of {', '.join(cfg.prompts)}")


def _reference(key: str, ref: Any, names: list[str], where: str) -> None:
    """A `from`/`judge`/`reward` value that is not an earlier stage must be an existing run directory (or,
    for reward, a function 'module:function'): a stage name's typo is an error, not a path."""
    if not isinstance(ref, str) or Path(ref).exists() or (key == "reward" and ":" in ref):
        return
    close = difflib.get_close_matches(ref, names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (stages: {', '.join(names)})"
    raise ConfigError(f"{where}: '{key}: {ref}' is neither an earlier stage nor an existing run directory{hint}")


VAR = re.compile(r"\$\{([^}]*)\}")


def substitute(recipe: dict[str, Any], source: str) -> dict[str, Any]:
    """`${name}` in any string of the recipe -> `vars: {name: value}` (e.g. one data folder for every stage, set
    from the command line with `--set vars.name=VALUE`)."""
    names = recipe.get("vars") or {}
    if not isinstance(names, dict):
        raise ConfigError(f"{source}: 'vars' maps names to values, got {names!r}")

    def fill(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        if not isinstance(value, str):
            return value
        for name in VAR.findall(value):
            if name not in names:
                raise ConfigError(f"{source}: '${{{name}}}' is used but not defined under vars "
                                  f"(defined: {', '.join(names) or 'none'})")
        return VAR.sub(lambda m: str(names[m[1]]), value)

    return {k: (v if k == "vars" else fill(v)) for k, v in recipe.items()}


def plan(recipe: dict[str, Any], source: str) -> tuple[Path, list[tuple[str, str, Any]]]:
    """Validate a pipeline recipe into (output root, [(name, method, config)]) without running anything."""
    unknown = set(recipe) - {"output", "stages", "eval", "vars"}
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {sorted(unknown)} (expected: output, stages, eval, "
                          "vars)")
    recipe = substitute(recipe, source)
    if not isinstance(recipe.get("stages"), dict) or not recipe["stages"]:
        raise ConfigError(f"{source}: 'stages' must map stage names to their settings")
    if not isinstance(recipe.get("output") or "runs", str):
        raise ConfigError(f"{source}: 'output' is a directory path, got {recipe['output']!r}")
    root = Path(recipe.get("output") or "runs")
    steps, seen = [], {}
    for name, settings in recipe["stages"].items():
        method, cfg = plan_stage(name, settings, recipe["stages"], seen, root, f"{source}: stages.{name}")
        seen[name] = Path(cfg.output)
        steps.append((name, method, cfg))
    check_eval(recipe.get("eval"), seen, source)
    return root, steps


def plan_stage(name: str, settings: Any, stages: dict[str, Any], seen: dict[str, Path], root: Path, where: str
               ) -> tuple[str, Any]:
    """One stage's (method, config): stage references resolved to the run directories of earlier stages, paths
    checked, every value checked by its config class, and its required inputs present."""
    if settings is not None and not isinstance(settings, dict):
        raise ConfigError(f"{where}: a stage's settings are a mapping of keys to values, got "
                          f"{type(settings).__name__} {settings!r}")
    settings = dict(settings or {})
    method = settings.pop("stage", name)
    if not isinstance(method, str) or method not in C.STAGES:
        raise ConfigError(f"{where}: unknown stage '{method}' (one of {', '.join(C.STAGES)}; "
                          f"name it with `stage:` if the key is your own name)")
    for key in STAGE_REFS:
        ref = settings.get(key)
        if isinstance(ref, str) and ref in stages:
            if ref not in seen:
                raise ConfigError(f"{where}: '{key}: {ref}' names a stage that does not run before it")
            settings[key] = str(seen[ref])
        else:
            _reference(key, ref, list(stages), where)
    for key in PATH_KEYS:
        for path in settings.get(key) if isinstance(settings.get(key), list) else [settings.get(key)]:
            if isinstance(path, str) and not data.exists(path):
                raise ConfigError(f"{where}: {key} '{path}' does not exist")
    settings.setdefault("output", str(root / name))
    cfg = C.build(C.STAGES[method], settings, source=where)  # every value checked (config classes)
    check_inputs(method, cfg, where)
    return method, cfg


def check_eval(ev: Any, seen: dict[str, Path], source: str) -> None:
    if ev is None:
        return
    if not isinstance(ev, dict) or set(ev) - set(EVAL_KEYS):
        raise ConfigError(f"{source}: eval takes {', '.join(EVAL_KEYS)}")
    limits = {"max_new_tokens": ev.get("max_new_tokens", 64)}
    if ev.get("max_prompt_length") is not None:  # null, as absent: whole prompts
        limits["max_prompt_length"] = ev["max_prompt_length"]
    for key, tokens in limits.items():
        if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1:
            raise ConfigError(f"{source}: eval.{key} must be an integer >= 1, got {tokens!r}")
    for key in ("prompts", "pairs", "judge"):
        if ev.get(key) is not None and not isinstance(ev[key], str):
            raise ConfigError(f"{source}: eval.{key} must be a path{' or a stage name' * (key == 'judge')}, got "
                              f"{ev[key]!r}")
    if not isinstance(ev.get("comparison_prompts", False), bool):
        raise ConfigError(f"{source}: eval.comparison_prompts must be true or false, got {ev['comparison_prompts']!r}")
    for key in ("prompts", "pairs"):
        if ev.get(key) and not data.exists(ev[key]):
            raise ConfigError(f"{source}: eval.{key} '{ev[key]}' does not exist")
    if ev.get("judge") and ev["judge"] not in seen and not Path(ev["judge"]).exists():
        raise ConfigError(f"{source}: eval.judge '{ev['judge']}' is neither a stage nor a run directory")


def select(steps: list, only: list[str] | None, from_stage: str | None) -> list:
    names = [n for n, _, _ in steps]
    for n in (only or []) + ([from_stage] if from_stage else []):
        if n not in names:
            raise ConfigError(f"no stage '{n}' in this recipe (stages: {', '.join(names)})")
    if from_stage:
        steps = steps[names.index(from_stage):]
    return [s for s in steps if not only or s[0] in only]


def run_pipeline(recipe_path: str, only: list[str] | None = None, from_stage: str | None = None,
                 overwrite: bool = False, assignments: list[str] | None = None) -> Path:
    recipe = C.override(C.read_recipe(recipe_path), assignments)
    root, steps = plan(recipe, recipe_path)
    todo = select(steps, only, from_stage)
    for name, method, cfg in todo:
        manifest = runs.read_manifest(cfg.output) if (Path(cfg.output) / runs.MANIFEST).exists() else {}
        manifest = {} if runs.is_claim(manifest) else manifest  # a run that never started: Run.open sorts it out
        status = manifest.get("status")
        changed = manifest and (runs.lineage_changes(manifest) or runs.reward_changes(manifest))
        if changed:  # an earlier stage was run again: this one trained on (or against) what that replaced
            print(f"[align] {name}: {changed} since the run in {cfg.output} was trained on it; running it again "
                  "from the start", flush=True)
        elif status == runs.COMPLETE and not overwrite:
            print(f"[align] {name}: complete in {cfg.output}, skipped", flush=True)
            continue
        elif status == runs.FAILED:  # it diverged: resuming would continue from diverged weights
            print(f"[align] {name}: the run in {cfg.output} failed; running it again from the start", flush=True)
        restart = bool(changed) or status == runs.FAILED
        resume = status in (runs.RUNNING, runs.INTERRUPTED) and not overwrite and not restart
        cfg = dataclasses.replace(cfg, resume=resume, overwrite=overwrite or restart)
        print(f"[align] {name}: {'resuming' if cfg.resume else 'running'} {method} -> {cfg.output}", flush=True)
        run_stage(method, cfg)
    ev = substitute(recipe, recipe_path).get("eval")
    if ev and not only:
        from align import evaluate

        outputs = {name: str(cfg.output) for name, _, cfg in steps}
        judge = outputs.get(ev.get("judge"), ev.get("judge"))
        evaluate.evaluate_runs(list(outputs.values()), ev.get("prompts"), judge, ev.get("pairs"),
                               str(root / "report"), ev.get("max_new_tokens", 64), ev.get("comparison_prompts", False),
                               overwrite=True,  # the recipe's own report, rewritten on each run
                               max_prompt_length=ev.get("max_prompt_length"))
    return root
