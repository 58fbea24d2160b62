# syntax=docker/dockerfile:1
# The cuelab image: Blender's Python module with the system libraries it loads, and CPU torch.
# Every step but training runs in it (sample, render, merge, sensor, validate...):
# components.IMAGE, set by $CUELAB_IMAGE. Build it from the project root:
#
#   docker build -f docker/render.Dockerfile -t ghcr.io/cuelab/cuelab:0.1.0 .
#
# Versions: torch and bpy here, every other package from constraints.txt (the frozen local
# environment), so the image and `make setup` install the same things; tests/test_docker.py keeps
# these pins equal to pyproject.toml's.

# The interpreter constraints.txt was frozen with.
FROM python:3.11.7-slim-bookworm AS python
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1

FROM python AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
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
# torch alone from the PyTorch index (PyPI's Linux wheel is the CUDA build, gigabytes more);
# --no-deps: its dependencies come from PyPI in the next step, pinned like everything else.
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
# The system libraries the bpy wheel's modules link against (ldd: X11 client libraries, GL; Xt
# and OpenGL for MaterialX's renderer) or load (EGL, for a headless GPU context); a slim image has
# none of them. Not version-pinned: Debian serves only the current version of each, so exact pins
# would break the build at its next security update; the base image's tag fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libegl1 libgl1 libopengl0 libsm6 libx11-6 libxext6 libxfixes3 libxi6 libxkbcommon0 \
        libxrender1 libxt6 \
    && rm -rf /var/lib/apt/lists/*
# Kubeflow's launcher writes artifacts under /gcs, /minio and /s3, which a non-root user cannot
# create (kubeflow/pipelines#5673: newer backends mount them, older ones do not).
RUN useradd --create-home --uid 1000 cuelab \
    && mkdir /gcs /minio /s3 && chown cuelab /gcs /minio /s3
COPY --from=build /opt/venv /opt/venv
# Cycles renders on a GPU when the pod has one: CUDA needs the driver's compute libraries, OptiX
# its graphics ones (libnvoptix).
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics
USER cuelab
WORKDIR /home/cuelab
# A missing system library fails the build, not the first render pod.
ARG BPY_VERSION=5.0.1
RUN python -c "import bpy, cuelab.render.studio; assert bpy.app.version_string == '$BPY_VERSION'"
