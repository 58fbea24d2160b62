"""The cuelab pipeline: the same steps as dvc.yaml, wired as Kubeflow components.

Compile:   cuelab pipeline compile        (writes pipelines/cuelab_pipeline.yaml)
Run here:  cuelab pipeline run-local      (kfp.local.SubprocessRunner)
"""

from kfp import dsl

from components.evaluate import evaluate
from components.render import merge_renders, render, shard_indices
from components.report import report
from components.sample import sample
from components.sensor import sensor
from components.train import train
from components.validate import validate
from components.version_dataset import version_dataset


@dsl.pipeline(
    name="cuelab",
    description="Render a controlled synthetic dataset, train a CNN, and trace which cues it uses.",
)
def cuelab_pipeline(params_yaml: str, render_shards: int = 2, dvc_remote: str = "",
                    mlflow_tracking_uri: str = "") -> dsl.Dataset:
    """params_yaml: the experiment, the text of a params.yaml file; render_shards: how many
    pods render in parallel; dvc_remote: a DVC remote (folder or URL) the validated dataset is
    pushed to (empty: not pushed); mlflow_tracking_uri: the MLflow server training reports to
    (empty: the pod's MLFLOW_TRACKING_URI). Returns the dataset (the final images)."""
    scenes = sample(params_yaml=params_yaml).set_display_name("sample scenes")
    shards = shard_indices(shards=render_shards).set_display_name("plan render shards")
    with dsl.ParallelFor(shards.output, name="render-shards") as shard:
        part = (render(params_yaml=params_yaml, scenes=scenes.outputs["scenes"], shard=shard,
                       shards=render_shards)
                .set_display_name("render shard")
                .set_retry(num_retries=2)
                .set_cpu_limit("4").set_memory_limit("8G"))
    merged = merge_renders(params_yaml=params_yaml, scenes=scenes.outputs["scenes"],
                           parts=dsl.Collected(part.outputs["renders"]))
    merged.set_display_name("merge renders")
    images = sensor(params_yaml=params_yaml, scenes=scenes.outputs["scenes"],
                    renders=merged.outputs["renders"]).set_display_name("camera simulation")
    gate = validate(params_yaml=params_yaml, scenes=scenes.outputs["scenes"],
                    images=images.outputs["images"]).set_display_name("validate data (gate)")
    with dsl.If(dvc_remote != "", name="push-dataset"):
        (version_dataset(images=images.outputs["images"], dvc_remote=dvc_remote)
         .after(gate).set_display_name("push dataset to DVC"))
    trained = (train(params_yaml=params_yaml, images=images.outputs["images"],
                     mlflow_tracking_uri=mlflow_tracking_uri)
               .after(gate).set_display_name("train CNN")
               .set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
               .set_cpu_limit("8").set_memory_limit("32G"))
    evaluated = (evaluate(params_yaml=params_yaml, scenes=scenes.outputs["scenes"],
                          images=images.outputs["images"], model=trained.outputs["model"])
                 .set_display_name("evaluate cues").set_cpu_limit("4").set_memory_limit("8G"))
    (report(params_yaml=params_yaml, evaluation=evaluated.outputs["evaluation"])
     .set_display_name("trace report"))
    return images.outputs["images"]
