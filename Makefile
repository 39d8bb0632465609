# npcai: two entry points for a new user.
#   make demo   set up .venv, build the phantom hospital export and run the demo study
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= demo

.PHONY: demo test setup clean bench bench-learning

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m npcai.demo --out $(DEMO)

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	@for b in benchmarks/*.py; do case $$b in benchmarks/learning.py|benchmarks/segment_3d_probe.py) continue;; esac; echo "== $$b"; $(BIN)/python $$b || exit 1; done

# hours on 2 CPU cores: every shipped study's fast preset under 5-fold CV against the phantom's oracle
bench-learning: $(STAMP)
	$(BIN)/python benchmarks/learning.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
