"""report: the evaluation -> the trace report, one self-contained HTML page (for the dashboard)."""

from kfp import dsl

from cuelab.kubeflow.components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def report(params_yaml: str, evaluation: dsl.Input[dsl.Dataset], html: dsl.Output[dsl.HTML]):
    """The factors ranked by how much the model depends on them, with their evidence."""
    import tempfile
    from pathlib import Path

    from cuelab.report import report as report_step

    with tempfile.TemporaryDirectory() as tmp:  # the page shows the params as the user wrote them
        params = Path(tmp) / "params.yaml"
        params.write_text(params_yaml)
        summary = report_step(params, evaluation.path, html.path, validation=None,
                              train_metrics=None)
    html.metadata.update({"findings": [f"{factor}: {text}" for factor, text in summary.findings]})
    print(summary)
