"""The study pipeline's own steps: the variants of a study file, and the study report over their
evaluations."""

from typing import Dict, List

from kfp import dsl

from cuelab.kubeflow.components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def plan_study(study_yaml: str, params_yaml: str) -> List[Dict[str, str]]:
    """Each variant of the study (checked as `cuelab study check` checks it): its name and its
    params.yaml text, the items of the variants' ParallelFor."""
    import tempfile

    import yaml

    from cuelab.study import study_from_texts

    with tempfile.TemporaryDirectory() as tmp:  # the study's base is the params given here
        study = study_from_texts(study_yaml, params_yaml, tmp)
    variants = [{"name": v.name, "params_yaml": yaml.safe_dump(
        v.experiment.model_dump(mode="json"), sort_keys=False)} for v in study.variants()]
    print(f"study '{study.name}': {len(variants)} variants x {study.spec.replicates} replicates")
    return variants


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def study_scenes(study_yaml: str, params_yaml: str, scenes: dsl.Output[dsl.Dataset]):
    """One scenes row per distinct render across the variants (`cuelab.study.study_scenes`):
    rendered once into the shared render cache before the variants fan out, so that parallel
    variants never draw the same scene twice."""
    import tempfile
    from pathlib import Path

    from cuelab.scenes import write_table
    from cuelab.study import study_from_texts, study_scenes as union

    with tempfile.TemporaryDirectory() as tmp:
        table = union(study_from_texts(study_yaml, params_yaml, tmp))
    write_table(table, Path(scenes.path))
    scenes.metadata.update({"renders": len(table)})
    print(f"{len(table)} distinct renders across the study's variants")


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def study_report(study_yaml: str, params_yaml: str,
                 evaluations: dsl.Input[List[dsl.Dataset]], html: dsl.Output[dsl.HTML],
                 tables: dsl.Output[dsl.Artifact], mlflow_tracking_uri: str = ""):
    """The study report over every variant's evaluation (matched to its variant by the name in
    its results.json), its CSV tables, and the study in MLflow: a parent run, a child per
    variant."""
    import shutil
    import tempfile
    from pathlib import Path

    from cuelab.results import load_results
    from cuelab.study import study_from_texts
    from cuelab.study_report import study_report as report_step
    from cuelab.study_tracking import log_study

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        study = study_from_texts(study_yaml, params_yaml, tmp)
        runs = tmp / "runs"
        for evaluation in evaluations:
            name = load_results(evaluation.path).experiment
            shutil.copytree(evaluation.path, runs / name / "evaluation")
        out = Path(tables.path)
        out.mkdir(parents=True, exist_ok=True)
        print(report_step(study, runs, out / "study.html"))
        shutil.copy(out / "study.html", html.path)
        print(log_study(study, runs, sorted(out.iterdir()), mlflow_tracking_uri or None))
