"""Kubeflow components: one thin lightweight component per step.

Each body imports its step function from the `cuelab` package and calls it; the logic lives in
the package, so the CLI, DVC, these components and the tests all run the same code. The body is
serialised into the compiled pipeline and runs in the project's image, which has cuelab installed
(so `install_kfp_package=False`).
"""

import os

# The image every component runs in; override at compile time for your registry.
IMAGE = os.environ.get("CUELAB_IMAGE", "ghcr.io/cuelab/cuelab:0.1.0")
