# The two commands of the README. Both create .venv from constraints.txt when it is missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: train test test-fast clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# setuptools warns on every editable install that a folder named like the package may shadow it:
	@# here that folder is the package's own source, so the warning says nothing (it is the only one dropped).
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

## Train the default job (DQN on CartPole-v1), log to ./mlflow.db, print the final eval return.
train: $(STAMP)
	$(BIN)/lightq fit --config configs/dqn/cartpole.yaml

## Run the whole test suite (slow learning tests included, as in CI).
test: $(STAMP)
	$(BIN)/python -m pytest -q -ra tests

## Unit and integration tests only.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -ra -m "not slow" tests

clean:
	rm -rf $(VENV) mlflow.db mlruns lightning_logs checkpoints
