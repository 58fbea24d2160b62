"""Kubeflow components: one thin lightweight component per step.

Each body imports its step function from the `cuelab` package and calls it; the logic lives in
the package, so the CLI, DVC, these components and the tests all run the same code. The body is
serialised into the compiled pipeline and runs in one of the project's images (docker/), which have
cuelab installed (so `install_kfp_package=False`).
"""

import os

# The images the components run in, read at compile time; override them for your registry.
# IMAGE (docker/render.Dockerfile): Blender and CPU torch, for every step but training.
IMAGE = os.environ.get("CUELAB_IMAGE", "ghcr.io/cuelab/cuelab:0.1.0")
# TRAIN_IMAGE (docker/train.Dockerfile): CUDA torch, for the steps on a GPU node (train, evaluate).
TRAIN_IMAGE = os.environ.get("CUELAB_TRAIN_IMAGE", "ghcr.io/cuelab/cuelab-train:0.1.0")
