"""The cuelab pipeline: the same steps as dvc.yaml, wired as Kubeflow components, with what a
cluster needs (resources, retries, caching, GPU scheduling, credentials: options.ClusterOptions).

Compile:   cuelab pipeline compile        (writes pipelines/cuelab_pipeline.yaml)
Run here:  cuelab pipeline run-local      (kfp.local.SubprocessRunner)
Submit:    cuelab pipeline submit --host URL

The study pipeline (a study's variants fanned out with ParallelFor, renders shared through the
render cache): `build_study_pipeline`; `cuelab pipeline run-local --study studies/<name>.yaml`.
"""

from typing import NamedTuple

from kfp import dsl, kubernetes

from .components.evaluate import evaluate
from .components.render import merge_renders, render, shard_indices
from .components.report import report
from .components.sample import sample
from .components.sensor import sensor
from .components.study import plan_study, study_report, study_scenes
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


def render_tasks(params_yaml, scenes, o: ClusterOptions, render_shards, render_cache=""
                 ) -> dsl.PipelineTask:
    """Render a scenes table in `render_shards` parallel shards, then merge them (the merge
    checks every chunk and renders what a shard missed): the merge task."""
    shards = configure(shard_indices(shards=render_shards), "shard_indices", o)
    shards.set_display_name("plan render shards")
    with dsl.ParallelFor(shards.output, name="render-shards") as shard:
        part = configure(render(params_yaml=params_yaml, scenes=scenes, shard=shard,
                                shards=render_shards, render_cache=render_cache), "render", o)
        part.set_display_name("render shard")
    merged = configure(merge_renders(params_yaml=params_yaml, scenes=scenes,
                                     parts=dsl.Collected(part.outputs["renders"]),
                                     render_cache=render_cache), "merge_renders", o)
    merged.set_display_name("merge renders")
    return merged


def experiment_tasks(params_yaml, o: ClusterOptions, render_shards=None, render_cache="",
                     mlflow_tracking_uri="", dvc_remote=None, rendered=None
                     ) -> dict[str, dsl.PipelineTask]:
    """One experiment's steps, wired (inside a pipeline function): sample, render (in
    `render_shards` parallel shards, or as one task when None: inside the study pipeline's
    ParallelFor over variants), sensor, validate (the gate), push to `dvc_remote` (when not
    None and not empty), train, evaluate, report; rendering waits for the task `rendered`
    (the study's renders, made once into the render cache). Returns the tasks by step."""
    t = {}
    scenes = configure(sample(params_yaml=params_yaml), "sample", o)
    scenes.set_display_name("sample scenes")
    if render_shards is None:
        merged = configure(render(params_yaml=params_yaml, scenes=scenes.outputs["scenes"],
                                  shard=0, shards=1, render_cache=render_cache), "render", o)
        merged.set_display_name("render (from the study's cache)")
        if rendered is not None:
            merged.after(rendered)
    else:
        merged = render_tasks(params_yaml, scenes.outputs["scenes"], o, render_shards,
                              render_cache)
    images = configure(sensor(params_yaml=params_yaml, scenes=scenes.outputs["scenes"],
                              renders=merged.outputs["renders"]), "sensor", o)
    images.set_display_name("camera simulation")
    gate = configure(validate(params_yaml=params_yaml, scenes=scenes.outputs["scenes"],
                              images=images.outputs["images"]), "validate", o)
    gate.set_display_name("validate data (gate)")
    if dvc_remote is not None:
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
    t.update(sample=scenes, render=merged, images=images, validate=gate, train=trained,
             evaluate=evaluated, report=page)
    return t


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
        render cache, a folder every render pod mounts (empty: none on a cluster). Returns the
        dataset (the final images), the models and the trace report."""
        t = experiment_tasks(params_yaml, o, render_shards=render_shards,
                             render_cache=render_cache, mlflow_tracking_uri=mlflow_tracking_uri,
                             dvc_remote=dvc_remote)
        images, trained, page = t["images"], t["train"], t["report"]
        return Outputs(dataset=images.outputs["images"], model=trained.outputs["model"],
                       report=page.outputs["html"])

    return cuelab_pipeline


# The pipeline with the default cluster options.
cuelab_pipeline = build_pipeline()


def build_study_pipeline(options: ClusterOptions | None = None):
    """The study pipeline: every distinct scene of the study rendered once (in shards) into
    the render cache `render_cache` (a folder every render pod mounts: a ReadWriteMany volume on
    a cluster); then the variants (plan_study) fanned out with dsl.ParallelFor, each the whole
    experiment, its render step taking everything from the cache; then the study report over
    every variant's evaluation, and the study in MLflow (a parent run, a child per variant)."""
    o = options or ClusterOptions()

    @dsl.pipeline(
        name="cuelab-study",
        description="A grid of cuelab experiments x replicates, compared on the same probes.",
    )
    def cuelab_study(study_yaml: str, params_yaml: str, render_cache: str,
                     render_shards: int = 2, mlflow_tracking_uri: str = "") -> dsl.HTML:
        """study_yaml: the study file's text (its `base` is ignored: params_yaml is the base);
        params_yaml: the base experiment's params.yaml text; render_cache: the shared render
        cache's folder, which every render pod mounts; render_shards: how many pods render the
        study's distinct scenes, once, before the variants fan out; mlflow_tracking_uri: as the
        experiment pipeline's. Returns the study report."""
        plan = configure(plan_study(study_yaml=study_yaml, params_yaml=params_yaml),
                         "plan_study", o)
        plan.set_display_name("plan the study's variants")
        scenes = configure(study_scenes(study_yaml=study_yaml, params_yaml=params_yaml),
                           "sample", o)
        scenes.set_display_name("the study's distinct scenes")
        rendered = render_tasks(params_yaml, scenes.outputs["scenes"], o, render_shards,
                                render_cache)
        with dsl.ParallelFor(plan.output, name="variants") as variant:
            t = experiment_tasks(variant.params_yaml, o, render_cache=render_cache,
                                 mlflow_tracking_uri=mlflow_tracking_uri, rendered=rendered)
        page = configure(study_report(study_yaml=study_yaml, params_yaml=params_yaml,
                                      evaluations=dsl.Collected(t["evaluate"].outputs[
                                          "evaluation"]),
                                      mlflow_tracking_uri=mlflow_tracking_uri),
                         "study_report", o)
        page.set_display_name("study report")
        return page.outputs["html"]

    return cuelab_study
