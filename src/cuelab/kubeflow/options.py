"""What the compiled pipeline asks of a cluster, chosen when it is compiled: where the pods'
credentials come from, which steps get a GPU and how they reach a GPU node, what is cached, how
often a step is retried. kfp.local ignores all of it but caching, so one pipeline serves both.

No kfp import here: the CLI builds ClusterOptions before anything slow is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import CuelabError

# Every step, by what it does besides returning its outputs. A cached step must be a pure function
# of its inputs: a cache hit skips the step, and with it any side effect.
PURE_STEPS = ("sample", "shard_indices", "render", "merge_renders", "sensor", "validate", "report",
              "plan_study")
SIDE_EFFECTS = {
    "version_dataset": "pushes the dataset to the DVC remote",
    "train": "logs a run and registers a model in MLflow",
    "evaluate": "logs a run to MLflow",
    "study_report": "logs the study's runs to MLflow",
}
STEPS = PURE_STEPS + tuple(SIDE_EFFECTS)
STUDY_STEPS = ("plan_study", "study_report")  # the study pipeline's own

# cache policy -> which steps may be served from KFP's cache
CACHE_POLICIES = {
    "pure": PURE_STEPS,  # the default: never skip a side effect
    "all": STEPS,
    "none": (),
}

# (cpu request, memory request, cpu limit, memory limit) per step. Rendering (Cycles uses every
# core it is given) and training are the big ones; the bookkeeping steps are small.
RESOURCES = {
    "sample": ("1", "2G", "2", "4G"),
    "shard_indices": ("100m", "256M", "500m", "512M"),
    "render": ("4", "8G", "4", "8G"),
    "merge_renders": ("1", "2G", "4", "8G"),  # renders whatever a shard missed
    "sensor": ("2", "4G", "4", "8G"),
    "validate": ("1", "2G", "2", "8G"),
    "version_dataset": ("500m", "1G", "2", "4G"),
    "train": ("4", "16G", "8", "32G"),
    "evaluate": ("2", "4G", "4", "8G"),
    "report": ("500m", "1G", "1", "2G"),
    "plan_study": ("500m", "1G", "1", "2G"),
    "study_report": ("500m", "1G", "1", "2G"),
}

# Retried with exponential backoff (30 s, 60 s, ... at most 10 min): the steps that are long or
# talk to a server, where a lost node or a blip should not fail the run.
RETRIED_STEPS = ("render", "train", "evaluate", "version_dataset")
BACKOFF = {"backoff_duration": "30s", "backoff_factor": 2.0, "backoff_max_duration": "600s"}

# Steps that can use a GPU (render: Cycles, with render.device: gpu in the params).
GPU_CAPABLE = ("render", "train", "evaluate")

# The pods' environment, from Kubernetes objects in the run's namespace. Each key becomes the
# environment variable of the same name; all are optional (a missing object or key leaves the
# variable unset, and the step falls back as it does locally).
CONFIG_MAP_KEYS = (  # not secret: where things are
    "MLFLOW_TRACKING_URI",  # the mlflow_tracking_uri pipeline parameter wins when it is set
    "MLFLOW_S3_ENDPOINT_URL",  # MLflow artifacts on an S3-compatible store (MinIO...)
    "AWS_ENDPOINT_URL",  # a DVC remote s3://... on an S3-compatible store
    "AWS_DEFAULT_REGION",
    "GOOGLE_APPLICATION_CREDENTIALS",  # e.g. <STORAGE_SECRET_MOUNT>/gcs-key.json
)
MLFLOW_SECRET_KEYS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                      "MLFLOW_TRACKING_TOKEN")
STORAGE_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                       "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT",
                       "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN")
# The storage secret is also mounted as files here (a GCS service-account key, say).
STORAGE_SECRET_MOUNT = "/var/secrets/cuelab-storage"
# Which step gets which: training and evaluation talk to MLflow (whose artifacts may live in the
# object store), pushing the dataset talks to the DVC remote.
STEP_ENV = {
    "train": ("config_map", "mlflow_secret", "storage_secret"),
    "evaluate": ("config_map", "mlflow_secret", "storage_secret"),
    "version_dataset": ("config_map", "storage_secret"),
    "study_report": ("config_map", "mlflow_secret", "storage_secret"),
}

PULL_POLICIES = ("", "Always", "IfNotPresent", "Never")


@dataclass(frozen=True)
class ClusterOptions:
    """The cluster side of the compiled pipeline. An empty name turns that part off.

    config_map, mlflow_secret, storage_secret: the ConfigMap and Secrets (in the run's namespace)
        whose keys (CONFIG_MAP_KEYS, MLFLOW_SECRET_KEYS, STORAGE_SECRET_KEYS) become environment
        variables of the steps in STEP_ENV.
    accelerator, accelerator_count: the GPU resource each of gpu_steps asks for
        ("nvidia.com/gpu", 1); no accelerator: no GPU anywhere.
    gpu_steps: the steps that get one (of GPU_CAPABLE).
    gpu_toleration: a taint key the GPU steps tolerate (operator Exists, effect NoSchedule), as
        GPU node pools are often tainted; gpu_node_selector: node labels they must run on
        (e.g. {"cloud.google.com/gke-accelerator": "nvidia-l4"}).
    cache: "pure" (cache every step but those with side effects: pushing the dataset, MLflow),
        "all" or "none".
    retries: how often RETRIED_STEPS are retried, with exponential backoff (BACKOFF).
    image_pull_policy: for every step ("Always", "IfNotPresent", "Never"); empty: the cluster's.
    """

    config_map: str = "cuelab-config"
    mlflow_secret: str = "cuelab-mlflow"
    storage_secret: str = "cuelab-storage"
    accelerator: str = "nvidia.com/gpu"
    accelerator_count: int = 1
    gpu_steps: tuple[str, ...] = ("train",)
    gpu_toleration: str = "nvidia.com/gpu"
    gpu_node_selector: dict[str, str] = field(default_factory=dict)
    cache: str = "pure"
    retries: int = 2
    image_pull_policy: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "gpu_steps", tuple(self.gpu_steps))
        object.__setattr__(self, "gpu_node_selector", dict(self.gpu_node_selector))
        bad = [s for s in self.gpu_steps if s not in GPU_CAPABLE]
        if bad:
            raise CuelabError(f"--gpu-steps: got {', '.join(map(repr, bad))}; the steps that can "
                              f"use a GPU are {', '.join(GPU_CAPABLE)}")
        if self.cache not in CACHE_POLICIES:
            raise CuelabError(f"--cache: got {self.cache!r}; one of {', '.join(CACHE_POLICIES)} "
                              "(pure: every step but those with side effects)")
        if self.retries < 0:
            raise CuelabError(f"--retries: got {self.retries}; 0 or more")
        if self.accelerator and self.accelerator_count < 1:
            raise CuelabError(f"--gpus: got {self.accelerator_count}; at least 1 (no GPU: "
                              "an empty --accelerator)")
        if self.image_pull_policy not in PULL_POLICIES:
            raise CuelabError(f"--image-pull-policy: got {self.image_pull_policy!r}; one of "
                              f"{', '.join(p for p in PULL_POLICIES if p)}")
        for key, value in self.gpu_node_selector.items():
            if not key or not isinstance(value, str):
                raise CuelabError(f"--gpu-node-selector: got {key!r}={value!r}; LABEL=VALUE")

    def caches(self, step: str) -> bool:
        return step in CACHE_POLICIES[self.cache]

    def gpu(self, step: str) -> bool:
        return bool(self.accelerator) and step in self.gpu_steps

    def env_sources(self, step: str) -> dict[str, str]:
        """{"config_map" | "mlflow_secret" | "storage_secret": object name} for `step`."""
        return {kind: getattr(self, kind) for kind in STEP_ENV.get(step, ())
                if getattr(self, kind)}


def parse_node_selector(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """["LABEL=VALUE", ...] (the CLI's repeated --gpu-node-selector) -> {LABEL: VALUE}."""
    selector = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CuelabError(f"--gpu-node-selector: got {item!r}; LABEL=VALUE, e.g. "
                              "cloud.google.com/gke-accelerator=nvidia-l4")
        selector[key] = value
    return selector
