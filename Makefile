# The README's two commands: `make run` (the default experiment) and `make test`.
# Both create .venv if it is missing and install the pinned environment first.

VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(CURDIR)/$(VENV)/bin
STAMP   := $(VENV)/.installed

export PATH := $(BIN):$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1

.PHONY: setup run test ui clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "cuelab needs Python 3.11 (bpy 5.0.1), found " + sys.version'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

run: setup  ## the default experiment, every stage of dvc.yaml
	dvc repro
	@echo
	@echo "The trace report:  reports/trace_report.html   (open it in a browser; works offline)"
	@echo "The data gate:     reports/validation/index.html"
	@echo "MLflow runs:       make ui   -> http://127.0.0.1:5000   (store: ./mlflow.db)"
	@echo "DVC metrics/plots: dvc metrics show; dvc plots show   -> dvc_plots/index.html"

test: setup  ## every test: real Blender, DVC, kfp local
	pytest

ui: setup  ## browse the MLflow runs
	mlflow ui --backend-store-uri sqlite:///mlflow.db

clean:
	rm -rf $(VENV) data runs models reports metrics/plots mlflow.db dvc_plots
