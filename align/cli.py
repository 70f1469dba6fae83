"""The `align` command line: parse, build the stage config, call the stage, print the summary.

Stage commands get one flag per config field (generated from the dataclass, so flags, recipe keys and
docs never drift apart). Errors a user can fix print one line and exit 2.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
import typing
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from align import config as C
from align.errors import AlignError
from align.pipeline import run_stage

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="align: SFT -> reward model -> PPO / DPO, with LoRA, on one GPU or a CPU.")
data_app = typer.Typer(no_args_is_help=True, help="Look at data as training will see it.")
app.add_typer(data_app, name="data")


def exits_on_align_error(command: Callable[..., Any]) -> Callable[..., Any]:
    """A command whose AlignError (a mistake the user can fix, or a diverged run) prints one line, `error: ...`,
    and exits with the error's code (2; 3 for a diverged run) instead of a traceback."""
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except AlignError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(err.exit_code) from None

    return wrapper


def _escape(text: str) -> str:
    try:
        from rich.markup import escape
    except ImportError:  # without rich, typer prints help text as it is
        return text
    return escape(text)


def _option_type(tp: Any) -> Any:
    """Flags are all optional (None = not given, so the recipe or the default applies)."""
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType")):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if typing.get_origin(tp) is list:
        return Optional[list[typing.get_args(tp)[0]]]
    return Optional[tp]


def stage_command(name: str, cfg_cls: type, runner: Callable[[Any], Any], help: str) -> None:
    """Register `align NAME` with a flag per field of `cfg_cls` plus --config RECIPE."""
    hints = typing.get_type_hints(cfg_cls)
    params = [inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                                default=typer.Option(None, "--config", "-c", help="YAML recipe; flags override it."))]
    for f in dataclasses.fields(cfg_cls):
        flag = C.flag_name(f)
        tp = hints[f.name]
        decls = [f"--{flag}/--no-{flag}"] if tp is bool else [f"--{flag}"]
        default_txt = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        allowed = C.allowed(f)  # the field's declared range or choices
        limits = f"{'must be ' if allowed and not allowed.startswith('one of') else ''}{allowed}; " if allowed else ""
        params.append(inspect.Parameter(
            f.name, inspect.Parameter.KEYWORD_ONLY, annotation=_option_type(tp),
            default=typer.Option(None, *decls, show_default=False,  # escaped: rich would take "[...]" for markup
                                 help=_escape(f"{f.metadata.get('help', '')} [{limits}default: {default_txt}]"))))

    @exits_on_align_error
    def command(config: Optional[Path] = None, **flags: Any) -> None:
        recipe = C.read_recipe(config) if config else {}
        flags = {k: (v if v != [] else None) for k, v in flags.items()}
        cfg = C.build(cfg_cls, recipe, flags, source=f"align {name}" + (f" --config {config}" if config else ""))
        runner(cfg)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = help
    app.command(name, help=help)(command)


STAGE_HELP = {
    "sft": "Supervised fine-tuning on demonstrations (chat, Alpaca, ShareGPT, prompt/completion or text).",
    "rm": "Reward model on comparisons: pairs (text or chat), HH-RLHF dialogues, or rankings of K responses "
          "(all K(K-1)/2 pairs, batched per prompt).",
    "dpo": "Direct preference optimisation from the SFT model on pairs or rankings (the reference is the SFT "
           "model exactly).",
    "ppo": "RLHF with PPO against a reward model or function, KL-penalised to the SFT model; one base model "
           "carries policy, reference, value and reward.",
}
for _name, _help in STAGE_HELP.items():
    stage_command(_name, C.STAGES[_name], partial(run_stage, _name), _help)


SET_HELP = "Override a recipe value: KEY=VALUE with a dotted key, e.g. stages.sft.data=my.jsonl (repeatable)."
recipe_app = typer.Typer(no_args_is_help=True, help="Check recipes before anything runs.")
app.add_typer(recipe_app, name="recipe")


@app.command("run")
@exits_on_align_error
def pipeline_command(recipe: Path = typer.Argument(..., help="A pipeline recipe (output + stages)."),
                     only: Optional[list[str]] = typer.Option(None, "--only", help="Run only this stage (repeatable)."),
                     from_stage: Optional[str] = typer.Option(None, "--from-stage", help="Start at this stage."),
                     overwrite: bool = typer.Option(False, help="Re-run stages that are already complete."),
                     assignments: Optional[list[str]] = typer.Option(None, "--set", help=SET_HELP)) -> None:
    """Run a pipeline recipe's stages in order; complete stages are skipped, interrupted ones resume."""
    from align import pipeline

    pipeline.run_pipeline(str(recipe), only, from_stage, overwrite, assignments)


@recipe_app.command("validate")
@exits_on_align_error
def recipe_validate(file: Path = typer.Argument(..., help="A pipeline recipe, or a stage recipe with --stage."),
                    stage: Optional[str] = typer.Option(None, help="The stage a single-stage recipe is for."),
                    assignments: Optional[list[str]] = typer.Option(None, "--set", help=SET_HELP)) -> None:
    """Check keys, types, value ranges, stage references and paths of a recipe; a typo is an error, never
    silently ignored."""
    from align import pipeline

    recipe = C.override(C.read_recipe(file), assignments)
    if "stages" in recipe:
        _, steps = pipeline.plan(recipe, str(file))
        for name, method, cfg in steps:
            typer.echo(f"{name}: {method} -> {cfg.output}")
    else:
        if stage not in C.STAGES:
            raise C.ConfigError(f"{file}: a single-stage recipe needs --stage ({', '.join(C.STAGES)})")
        where = f"{file} (stage {stage})"
        pipeline.check_inputs(stage, C.build(C.STAGES[stage], recipe, source=where), where, required=False)
    typer.echo(f"{file}: ok")


@app.command()
@exits_on_align_error
def merge(run_dir: Path = typer.Argument(..., help="A finished run."),
          output: Path = typer.Option(..., "--output", "-o", help="Directory for the merged checkpoint."),
          overwrite: bool = typer.Option(False, help="Replace an existing output directory."),
          dtype: str = typer.Option("auto", help="auto, bf16, fp16, fp32.")) -> None:
    """Merge a run's adapters into its base: a standalone checkpoint for `from_pretrained`."""
    from align import infer

    infer.merge(str(run_dir), str(output), overwrite=overwrite, dtype=dtype)


@app.command("eval")
@exits_on_align_error
def eval_runs(run_dirs: list[str] = typer.Argument(..., help="Finished runs: policies (sft/dpo/ppo) and/or reward models."),
              prompts: Optional[str] = typer.Option(None, help="Held-out prompts for the policies."),
              pairs: Optional[str] = typer.Option(None, help="Held-out comparisons for the reward models."),
              judge: Optional[str] = typer.Option(None, help="The reward model that scores answers (default: the "
                                                             "first RM among RUN_DIRS)."),
              output: Optional[str] = typer.Option(None, help="Folder for eval.json, report.md and plots."),
              overwrite: bool = typer.Option(False, help="Replace an earlier report in --output."),
              max_new_tokens: int = typer.Option(64),
              comparison_prompts: bool = typer.Option(False, help="--prompts is a comparison file (pairs, HH-RLHF "
                                                                   "dialogues): take its prompts."),
              max_prompt_length: Optional[int] = typer.Option(None, min=1, help="Longer prompts keep their last tokens "
                                                              "(as PPO/DPO cut them in training; counted in the "
                                                              "report). Default: whole prompts.")) -> None:
    """Policies: reward, win rate and KL vs their SFT reference, samples side by side; RMs: accuracy."""
    from align import evaluate

    evaluate.evaluate_runs(run_dirs, prompts, judge, pairs, output, max_new_tokens, comparison_prompts, overwrite,
                           max_prompt_length)


@app.command()
@exits_on_align_error
def score(run_dir: str = typer.Argument(..., help="An `align rm` run."),
          data_file: str = typer.Option(..., "--data", help="Prompt/response rows, or comparisons."),
          output: Optional[Path] = typer.Option(None, help="Write one JSON line per row here (default: stdout)."),
          overwrite: bool = typer.Option(False, help="Replace an existing --output file.")) -> None:
    """Score rows with a reward model; for comparisons also report the pairwise accuracy."""
    from align import evaluate

    result = evaluate.score_file(run_dir, data_file, str(output) if output else None, overwrite)
    typer.echo(" | ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()),
               err=output is None)


@app.command()
@exits_on_align_error
def generate(run_dir: str = typer.Argument(..., help="A finished run (any stage), or a model spec."),
             prompt: Optional[list[str]] = typer.Option(None, "--prompt", "-p", help="A user message (repeatable)."),
             prompts: Optional[Path] = typer.Option(None, help="A prompts file (jsonl/json/csv/parquet)."),
             max_new_tokens: int = typer.Option(128), temperature: float = typer.Option(0.0, help="0 = greedy."),
             top_p: float = typer.Option(1.0), batch_size: int = typer.Option(8),
             output: Optional[Path] = typer.Option(None, help="Write {prompt, response} JSONL here."),
             overwrite: bool = typer.Option(False, help="Replace an existing --output file."),
             trust_remote_code: bool = typer.Option(False)) -> None:
    """Sample responses from a run's model (or a base model) with its chat template."""
    from align import infer

    infer.generate_cli(run_dir, prompt or [], prompts, max_new_tokens, temperature, top_p, batch_size,
                        output, trust_remote_code, overwrite)


@app.command()
@exits_on_align_error
def chat(run_dir: str = typer.Argument(..., help="A finished run (any stage) or a model spec."),
         max_new_tokens: int = typer.Option(256), temperature: float = typer.Option(0.7, help="0 = greedy."),
         trust_remote_code: bool = typer.Option(False)) -> None:
    """Chat with a model in the terminal (chat template applied, answers streamed)."""
    from align import infer

    infer.chat_loop(run_dir, max_new_tokens, temperature, trust_remote_code)


@data_app.command("inspect")
@exits_on_align_error
def data_inspect(file: list[str] = typer.Argument(..., help="Data file(s)."),
                 model: str = typer.Option(..., "--model", "-m", help="Model spec or run directory (its tokenizer)."),
                 n: int = typer.Option(3, "-n", help="Examples to show."),
                 max_length: int = typer.Option(1024), completion_only_loss: bool = typer.Option(True),
                 trust_remote_code: bool = typer.Option(False)) -> None:
    """Render examples exactly as SFT sees them: loss tokens marked, end-of-turn visible, lengths."""
    from align import preview

    preview.inspect_sft(file, model, n, max_length, completion_only_loss, trust_remote_code)


def quiet_libraries() -> None:
    """Library deprecation chatter hides our own progress lines; real errors still surface."""
    import logging
    import os
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*gemm_4bit.*")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def huge_pages_for_tensors() -> None:
    """torch backs CPU tensors of 2 MB and more with transparent huge pages when THP_MEM_ALLOC_ENABLE is set
    before its first allocation (so here, before torch is imported): a step that touches new memory (the first
    ones, a longer batch) faults far fewer pages in. On this project's 2-core VM a first touch costs ~45 us
    per 4 KB page: the first micro-batch of a DPO run spent 28 s of its 30 in the kernel (644k page faults;
    267k with huge pages), and 3 DPO steps at the bench's shape took 39.5 s instead of 48.8 s after it. Kept
    if the user set it, and off where the kernel has no transparent huge pages."""
    import os

    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            available = "[never]" not in f.read()
    except OSError:  # not Linux, or no THP
        available = False
    if available:
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def main() -> None:
    quiet_libraries()
    huge_pages_for_tensors()
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
