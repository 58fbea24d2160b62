"""evaluate: the trained model on every probe -> which cues it uses (metrics, plots, results)."""

from kfp import dsl

from cuelab.kubeflow.components import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def evaluate(params_yaml: str, scenes: dsl.Input[dsl.Dataset], images: dsl.Input[dsl.Dataset],
             model: dsl.Input[dsl.Model], evaluation: dsl.Output[dsl.Dataset],
             metrics: dsl.Output[dsl.Metrics],
             classification: dsl.Output[dsl.ClassificationMetrics],
             html: dsl.Output[dsl.HTML], mlflow_tracking_uri: str = ""):
    """Every trained replicate on the sweeps, cue conflicts, the background protocol and
    attribution; for the dashboard: the headline metrics (reliance, robustness, worst-group
    accuracy, each with its interval), the IID confusion matrix and the trace page of the
    evaluation. `evaluation` holds everything for the trace report (results.json, figures, plot
    data, predictions). Its MLflow run goes where training's went: mlflow_tracking_uri, else the
    pod's MLFLOW_TRACKING_URI."""
    import json
    import os
    import shutil
    from pathlib import Path

    if mlflow_tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = mlflow_tracking_uri

    from cuelab.config import experiment_from_yaml
    from cuelab.evaluate import evaluate as evaluate_step
    from cuelab.evaluate import flatten
    from cuelab.results import load_results

    out = Path(evaluation.path)
    # the metrics and the plot data go in with the results: the report needs one artifact
    summary = evaluate_step(experiment_from_yaml(params_yaml, "params_yaml"), scenes.path,
                            images.path, model.path, out=out, metrics=out / "metrics.json",
                            plots=out / "plots", progress=False)
    for name, value in flatten(json.loads(summary.metrics.read_text())).items():
        metrics.log_metric(name, value)
    results = load_results(out)
    classification.log_confusion_matrix(results.classes, results.iid.confusion)
    shutil.copy(out / "index.html", html.path)
    evaluation.metadata.update({"accuracy": summary.accuracy, "models": summary.models,
                                "reliance": dict(summary.ranking),
                                "robustness": dict(summary.fragile),
                                "mlflow_run": summary.mlflow_run})
    print(summary)
