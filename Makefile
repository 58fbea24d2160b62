# The README's two commands: `make run` (the default experiment) and `make test`.
# Both create .venv if it is missing and install the pinned environment first.

VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(CURDIR)/$(VENV)/bin
STAMP   := $(VENV)/.installed

export PATH := $(BIN):$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1

.PHONY: setup run test ui clean clean-mlflow

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

# Two workers, a test file each (pytest-xdist): half the suite waits on subprocesses, servers and
# DVC's queue, not the CPU (19-21 min against 28.5 min in one process on 2 cores, on an earlier
# machine; 9.8 min on a faster one). The two hangs an earlier two-worker CI run met are mended:
# a Blender worker's death (render uses ProcessPoolExecutor) and DVC's queue with more than one
# worker (study_run's hang guard).
test: setup  ## every test: real Blender, DVC, kfp local
	pytest -n 2 --dist loadfile

ui: setup  ## browse the MLflow runs
	mlflow ui --backend-store-uri sqlite:///mlflow.db

# `make images`: docker/render.Dockerfile and docker/train.Dockerfile, built with the first of
# docker (if its daemon answers), podman or buildah on PATH (or IMAGE_TOOL=...), tagged
# $(REGISTRY)/cuelab:$(VERSION) and $(REGISTRY)/cuelab-train:$(VERSION). Optional: PIP_INDEX_URL
# (a PyPI mirror), PIP_CA (a CA file for it, passed as a build secret), RENDER_TORCH_INDEX / TRAIN_TORCH_INDEX (the PyTorch
# index of each image: CPU, CUDA 12.8 by default), DVC_EXTRAS (DVC's remote plugins), IMAGE_FLAGS
# (more build flags). Without a Docker daemon, e.g. on a CI runner: IMAGE_TOOL='buildah
# --storage-driver vfs' IMAGE_FLAGS='--isolation chroot --network host' (README: "Images").
.PHONY: images
comma        := ,
REGISTRY     ?= ghcr.io/cuelab
VERSION      ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
# docker only when its daemon answers (`docker info`); podman and buildah need none
LIVE_DOCKER   = $(shell command -v docker >/dev/null && docker info >/dev/null 2>&1 && command -v docker)
IMAGE_TOOL   ?= $(firstword $(LIVE_DOCKER) $(foreach tool,podman buildah,$(shell command -v $(tool))))
DVC_EXTRAS   ?= s3,gs,azure
IMAGE_ARGS    = --build-arg DVC_EXTRAS=$(DVC_EXTRAS) \
                $(if $(PIP_INDEX_URL),--build-arg PIP_INDEX_URL=$(PIP_INDEX_URL)) \
                $(if $(PIP_CA),--secret id=pip-ca$(comma)src=$(abspath $(PIP_CA))) $(IMAGE_FLAGS)
NO_IMAGE_TOOL = make images: no docker with a running daemon, podman or buildah on PATH (or set IMAGE_TOOL)

images:  ## build both images (docker, podman or buildah)
	$(if $(IMAGE_TOOL),,$(error $(NO_IMAGE_TOOL)))
	DOCKER_BUILDKIT=1 $(IMAGE_TOOL) build $(strip $(IMAGE_ARGS) \
	    $(if $(RENDER_TORCH_INDEX),--build-arg TORCH_INDEX=$(RENDER_TORCH_INDEX))) \
	    -f docker/render.Dockerfile -t $(REGISTRY)/cuelab:$(VERSION) .
	DOCKER_BUILDKIT=1 $(IMAGE_TOOL) build $(strip $(IMAGE_ARGS) \
	    $(if $(TRAIN_TORCH_INDEX),--build-arg TORCH_INDEX=$(TRAIN_TORCH_INDEX))) \
	    -f docker/train.Dockerfile -t $(REGISTRY)/cuelab-train:$(VERSION) .
	@echo
	@echo "Push them, then compile the pipeline for them:"
	@echo "  export CUELAB_IMAGE=$(REGISTRY)/cuelab:$(VERSION) CUELAB_TRAIN_IMAGE=$(REGISTRY)/cuelab-train:$(VERSION)"
	@echo "  cuelab pipeline compile --out cuelab_pipeline.yaml"

clean:  ## outputs and the environment; the MLflow runs stay (see clean-mlflow)
	rm -rf $(VENV) data runs models reports metrics/plots dvc_plots

clean-mlflow:  ## every MLflow run, model and artifact of this project: asks first
	@printf 'Delete mlflow.db and mlruns/ (every run, the model registry, the artifacts)? [y/N] '; \
	read answer; [ "$$answer" = y ] && rm -rf mlflow.db mlruns && echo deleted || echo kept
