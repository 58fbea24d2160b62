# syntax=docker/dockerfile:1
# The cuelab training image: torch built for CUDA, for the steps that run on a GPU node (train,
# evaluate): components.TRAIN_IMAGE, set by $CUELAB_TRAIN_IMAGE. Build it from the project root:
#
#   docker build -f docker/train.Dockerfile -t ghcr.io/cuelab/cuelab-train:0.1.0 .
#
# The CUDA libraries come in torch's own wheels (nvidia-* packages), so a slim Python image is the
# base and the node only needs the NVIDIA driver. Versions: torch here, every other package from
# constraints.txt (the frozen local environment); tests/test_docker.py keeps the torch pin equal to
# pyproject.toml's.

# The interpreter constraints.txt was frozen with.
FROM python:3.11.7-slim-bookworm AS python
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1

FROM python AS build
ARG TORCH_VERSION=2.13.0
# A CUDA 12 build; another one of this torch version (https://download.pytorch.org/whl/torch/)
# with --build-arg TORCH_INDEX=..., to match the nodes' driver.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
# Another package index than PyPI (a mirror, a proxy): --build-arg PIP_INDEX_URL=...; the CA
# that signs its certificate (or a TLS-inspecting proxy's): --secret id=pip-ca,src=ca.pem,
# mounted only while pip runs, never in a layer. pip reads both from the environment.
ARG PIP_INDEX_URL=https://pypi.org/simple
WORKDIR /src
COPY constraints.txt ./
# the pip of the local environment, not the one Python 3.11.7 bundled (23.2)
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && python -m venv /opt/venv && pip install --no-cache-dir -c constraints.txt pip==26.3
# torch alone from the PyTorch index; --no-deps: its dependencies (the nvidia-* and triton
# versions it pins, the rest from constraints.txt) come from PyPI in the next step.
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && pip install --no-cache-dir --no-deps -c constraints.txt --index-url "$TORCH_INDEX" \
        "torch==$TORCH_VERSION"
COPY pyproject.toml README.md ./
COPY src ./src
# DVC's remote plugins, for pushing datasets to s3://, gs:// and azure:// remotes (the
# version_dataset step), pinned in constraints.txt: --build-arg DVC_EXTRAS=s3 for fewer, "" for none.
ARG DVC_EXTRAS=s3,gs,azure
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && pip install --no-cache-dir -c constraints.txt . ${DVC_EXTRAS:+"dvc[$DVC_EXTRAS]"}

FROM python
# Kubeflow's launcher writes artifacts under /gcs, /minio and /s3, which a non-root user cannot
# create (kubeflow/pipelines#5673: newer backends mount them, older ones do not).
RUN useradd --create-home --uid 1000 cuelab \
    && mkdir /gcs /minio /s3 && chown cuelab /gcs /minio /s3
COPY --from=build /opt/venv /opt/venv
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER cuelab
WORKDIR /home/cuelab
# A CPU wheel slipping in (a wrong index) fails the build, not the first training run.
RUN python -c "import torch, cuelab; assert torch.version.cuda, torch.__version__"
