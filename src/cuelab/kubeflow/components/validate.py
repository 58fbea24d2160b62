"""validate: the data gate. Great Expectations over the scenes table and the images; a failure
raises, so the pipeline stops before training."""

from kfp import dsl

from cuelab.kubeflow.components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def validate(params_yaml: str, scenes: dsl.Input[dsl.Dataset], images: dsl.Input[dsl.Dataset],
             docs: dsl.Output[dsl.HTML], docs_site: dsl.Output[dsl.Artifact],
             summary: dsl.Output[dsl.Metrics]):
    """Check the data against the experiment; Data Docs and the summary are outputs: `docs` the
    index as one self-contained page (for the dashboard's viewer), `docs_site` the whole site
    (every result page, its assets), working offline."""
    import json
    import shutil
    from pathlib import Path

    from cuelab.config import experiment_from_yaml
    from cuelab.validate import standalone_page
    from cuelab.validate import validate as validate_step

    site = Path(docs.path).with_name("data_docs")
    report = Path(summary.path).with_name("validation.json")
    try:
        result = validate_step(experiment_from_yaml(params_yaml, "params_yaml"), scenes.path,
                               images.path, site, report, progress=False)
    finally:  # the dashboard shows the Data Docs of a failed gate too
        if (site / "index.html").is_file():
            Path(docs.path).write_text(standalone_page(site / "index.html"))
            shutil.copytree(site, docs_site.path, dirs_exist_ok=True)
    saved = json.loads(report.read_text())
    for key in ("expectations", "failed", "images"):
        summary.log_metric(key, saved[key])
    print(result)
