"""The cuelab pipeline: the same steps as dvc.yaml, wired as Kubeflow components, with what a
cluster needs (resources, retries, caching, GPU scheduling, credentials: options.ClusterOptions).

Compile:   cuelab pipeline compile        (writes pipelines/cuelab_pipeline.yaml)
Run here:  cuelab pipeline run-local      (kfp.local.SubprocessRunner)
Submit:    cuelab pipeline submit --host URL
"""

from typing import NamedTuple

from kfp import dsl, kubernetes

from .components.evaluate import evaluate
from .components.render import merge_renders, render, shard_indices
from .components.report import report
from .components.sample import sample
from .components.sensor import sensor
from .components.train import train
from .components.validate import validate
from .components.version_dataset import version_dataset
from .options import (BACKOFF, CONFIG_MAP_KEYS, MLFLOW_SECRET_KEYS, RESOURCES, RETRIED_STEPS,
                      STORAGE_SECRET_KEYS, STORAGE_SECRET_MOUNT, ClusterOptions)

_SECRET_KEYS = {"mlflow_secret": MLFLOW_SECRET_KEYS, "storage_secret": STORAGE_SECRET_KEYS}


def configure(task: dsl.PipelineTask, step: str, options: ClusterOptions) -> dsl.PipelineTask:
    """Resources, caching, retries, GPU and credentials of one step, as `options` say."""
    cpu_request, memory_request, cpu_limit, memory_limit = RESOURCES[step]
    (task.set_cpu_request(cpu_request).set_memory_request(memory_request)
     .set_cpu_limit(cpu_limit).set_memory_limit(memory_limit))
    task.set_caching_options(options.caches(step))
    if step in RETRIED_STEPS and options.retries:
        task.set_retry(num_retries=options.retries, **BACKOFF)
    if options.gpu(step):
        task.set_accelerator_type(options.accelerator)
        task.set_accelerator_limit(options.accelerator_count)
        if options.gpu_toleration:
            kubernetes.add_toleration(task, key=options.gpu_toleration, operator="Exists",
                                      effect="NoSchedule")
        for label, value in sorted(options.gpu_node_selector.items()):
            kubernetes.add_node_selector(task, label, value)
    for kind, name in options.env_sources(step).items():
        if kind == "config_map":
            kubernetes.use_config_map_as_env(task, name, {k: k for k in CONFIG_MAP_KEYS},
                                             optional=True)
        else:
            kubernetes.use_secret_as_env(task, name, {k: k for k in _SECRET_KEYS[kind]},
                                         optional=True)
        if kind == "storage_secret":
            kubernetes.use_secret_as_volume(task, name, mount_path=STORAGE_SECRET_MOUNT,
                                            optional=True)
    if options.image_pull_policy:
        kubernetes.set_image_pull_policy(task, options.image_pull_policy)
    return task


Outputs = NamedTuple("Outputs", dataset=dsl.Dataset, model=dsl.Model,  # noqa: UP014 (kfp reads it)
                     report=dsl.HTML)


def build_pipeline(options: ClusterOptions | None = None):
    """The pipeline function (a kfp GraphComponent), its cluster side set by `options`."""
    o = options or ClusterOptions()

    @dsl.pipeline(
        name="cuelab",
        description="Render a controlled synthetic dataset, train a CNN, and trace which cues it "
                    "uses.",
    )
    def cuelab_pipeline(params_yaml: str, render_shards: int = 2, dvc_remote: str = "",
                        mlflow_tracking_uri: str = "", render_cache: str = "") -> Outputs:
        """params_yaml: the experiment, the text of a params.yaml file; render_shards: how many
        pods render in parallel; dvc_remote: a DVC remote (folder or URL) the validated dataset is
        pushed to (empty: not pushed); mlflow_tracking_uri: the MLflow server training and
        evaluation report to (empty: the pods' MLFLOW_TRACKING_URI); render_cache: the shared
        render cache, a folder every render pod mounts (empty: none on a cluster). Returns the dataset (the
        final images), the models and the trace report."""
        scenes = configure(sample(params_yaml=params_yaml), "sample", o)
        scenes.set_display_name("sample scenes")
        shards = configure(shard_indices(shards=render_shards), "shard_indices", o)
        shards.set_display_name("plan render shards")
        with dsl.ParallelFor(shards.output, name="render-shards") as shard:
            part = configure(render(params_yaml=params_yaml, scenes=scenes.outputs["scenes"],
                                    shard=shard, shards=render_shards,
                                    render_cache=render_cache), "render", o)
            part.set_display_name("render shard")
        merged = configure(merge_renders(params_yaml=params_yaml, scenes=scenes.outputs["scenes"],
                                         parts=dsl.Collected(part.outputs["renders"]),
                                         render_cache=render_cache),
                           "merge_renders", o)
        merged.set_display_name("merge renders")
        images = configure(sensor(params_yaml=params_yaml, scenes=scenes.outputs["scenes"],
                                  renders=merged.outputs["renders"]), "sensor", o)
        images.set_display_name("camera simulation")
        gate = configure(validate(params_yaml=params_yaml, scenes=scenes.outputs["scenes"],
                                  images=images.outputs["images"]), "validate", o)
        gate.set_display_name("validate data (gate)")
        with dsl.If(dvc_remote != "", name="push-dataset"):
            pushed = configure(version_dataset(images=images.outputs["images"],
                                               dvc_remote=dvc_remote), "version_dataset", o)
            pushed.after(gate).set_display_name("push dataset to DVC")
        trained = configure(train(params_yaml=params_yaml, images=images.outputs["images"],
                                  mlflow_tracking_uri=mlflow_tracking_uri), "train", o)
        trained.after(gate).set_display_name("train CNN")
        evaluated = configure(evaluate(params_yaml=params_yaml, scenes=scenes.outputs["scenes"],
                                       images=images.outputs["images"],
                                       model=trained.outputs["model"],
                                       mlflow_tracking_uri=mlflow_tracking_uri), "evaluate", o)
        evaluated.set_display_name("evaluate cues")
        page = configure(report(params_yaml=params_yaml,
                                evaluation=evaluated.outputs["evaluation"]), "report", o)
        page.set_display_name("trace report")
        return Outputs(dataset=images.outputs["images"], model=trained.outputs["model"],
                       report=page.outputs["html"])

    return cuelab_pipeline


# The pipeline with the default cluster options.
cuelab_pipeline = build_pipeline()
