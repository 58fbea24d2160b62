"""The cuelab pipeline: the same steps as dvc.yaml, wired as Kubeflow components.

Compile:   cuelab pipeline compile        (writes pipelines/cuelab_pipeline.yaml)
Run here:  cuelab pipeline run-local      (kfp.local.SubprocessRunner)
"""

from kfp import dsl

from components.sample import sample


@dsl.pipeline(
    name="cuelab",
    description="Render a controlled synthetic dataset, train a CNN, and trace which cues it uses.",
)
def cuelab_pipeline(params_yaml: str) -> dsl.Dataset:
    """params_yaml: the experiment, the text of a params.yaml file. Returns the scenes table."""
    scenes = sample(params_yaml=params_yaml).set_display_name("sample scenes")
    return scenes.outputs["scenes"]
