"""sensor: clean renders -> the final images through the simulated camera (the dataset)."""

from kfp import dsl

from cuelab.kubeflow.components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def sensor(params_yaml: str, scenes: dsl.Input[dsl.Dataset], renders: dsl.Input[dsl.Dataset],
           images: dsl.Output[dsl.Dataset]):
    """Acquire every row of the scenes table from its render (sensor sweeps reuse renders)."""
    from cuelab.config import experiment_from_yaml
    from cuelab.sensor import sensor as sensor_step

    summary = sensor_step(experiment_from_yaml(params_yaml, "params_yaml"), scenes.path,
                          renders.path, images.path, progress=False)
    images.metadata.update({"images": summary.images, "renders_used": summary.renders_used})
    print(summary)
