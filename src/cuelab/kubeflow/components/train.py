"""train: the dataset -> a CNN (on the GPU node when the cluster gives one), tracked in MLflow."""

from kfp import dsl

from cuelab.kubeflow.components import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def train(params_yaml: str, images: dsl.Input[dsl.Dataset], model: dsl.Output[dsl.Model],
          metrics: dsl.Output[dsl.Metrics], mlflow_tracking_uri: str = ""):
    """Train, log the run and register the model in MLflow (mlflow_tracking_uri, else the
    pod's MLFLOW_TRACKING_URI, else a SQLite file in its working directory); the models folder
    (train.replicates models, each in replicate-<r>/) is the output."""
    import json
    import os
    from pathlib import Path

    if mlflow_tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = mlflow_tracking_uri
    from cuelab.config import experiment_from_yaml
    from cuelab.train import train as train_step

    report = Path(metrics.path).with_name("train.json")
    summary = train_step(experiment_from_yaml(params_yaml, "params_yaml"), images.path,
                         model.path, report, progress=False)
    for key, value in json.loads(report.read_text()).items():
        if isinstance(value, (int, float)):
            metrics.log_metric(key, value)
    model.metadata.update({"mlflow_run_id": summary.run_id,
                           "registered_model": summary.registered_model,
                           "model_version": summary.model_version,
                           "replicates": len(summary.replicates),
                           "framework": "pytorch"})
    print(summary)
