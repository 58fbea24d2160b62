"""sample: the experiment (params.yaml text) -> the scenes table (a Dataset artifact)."""

from kfp import dsl

from cuelab.kubeflow.components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def sample(params_yaml: str, scenes: dsl.Output[dsl.Dataset]):
    """Turn the experiment into the scenes table: one row per image, every factor value."""
    from cuelab.config import experiment_from_yaml
    from cuelab.sampling import sample as sample_step

    summary = sample_step(experiment_from_yaml(params_yaml, "params_yaml"), scenes.path)
    scenes.metadata.update({"rows": summary.rows, "renders": summary.renders})
    print(summary)
