# The two set-up commands of the README. Each creates .venv when it is missing.
VENV := .venv
BIN := $(VENV)/bin

$(VENV)/installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

.PHONY: run test
run: $(VENV)/installed  ## the suite's main job: the pooling study, quick profile, on the embedded digits
	$(BIN)/cnn-exp run pooling --profile quick

test: $(VENV)/installed  ## lint, then the tests (no network, no GPU needed)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q
