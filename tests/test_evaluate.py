"""The evaluate step: attribution against hand-built models, the step on the tiny dataset (files,
DVC plots, MLflow, kfp), and planted shortcuts that a real trained model must reveal."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from conftest import ROOT, tiny_experiment, write_params
from cuelab.errors import CuelabError
from cuelab.evaluate.attribution import occlusion, on_object_share, patch_corners, saliency
from cuelab.results import load_results
from cuelab.tracking import read_run_link


class BoxReader(nn.Module):
    """Logit 0 is the red channel summed over a box; logit 1 is a constant below it: the model
    decides on the box's pixels alone."""

    def __init__(self, box: tuple[slice, slice]):
        super().__init__()
        self.box = box
        self.bias = nn.Parameter(torch.tensor(-1.0))

    def forward(self, x):
        red = x[:, 0, self.box[0], self.box[1]].sum((1, 2))
        return torch.stack([red, self.bias.expand(len(x))], 1)


def box_images(n=3, size=12):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    images[:, 2:6, 3:8, 0] = 255
    mask = np.zeros((n, size, size), bool)
    mask[:, 2:6, 3:8] = True
    return images, mask


def test_saliency_is_the_gradient_of_the_chosen_logit():
    images, mask = box_images()
    maps = saliency(BoxReader((slice(2, 6), slice(3, 8))), images)
    # d(sum of red in the box)/d pixel: 1 in the box (red channel only), 0 elsewhere
    np.testing.assert_allclose(maps, mask.astype(float))
    assert on_object_share(maps, mask).tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("fill", [None, (0.0, 0.0, 0.0)])
def test_occlusion_agrees_with_a_patch_by_patch_loop(fill):
    images, mask = box_images(n=2, size=10)
    model = BoxReader((slice(2, 6), slice(3, 8)))
    patch = 4
    maps = occlusion(model, images, patch, fill, batch_size=5)  # several batches of patches
    x = images.astype(np.float64) / 255
    paint = x.mean((0, 1, 2)) if fill is None else np.array(fill)  # default: the mean colour
    expected = np.zeros((2, 10, 10))
    covered = np.zeros((10, 10))
    for r in patch_corners(10, patch):
        for c in patch_corners(10, patch):
            covered[r:r + patch, c:c + patch] += 1
            for i in range(2):
                occluded = x[i].copy()
                occluded[r:r + patch, c:c + patch] = paint
                drop = x[i, 2:6, 3:8, 0].sum() - occluded[2:6, 3:8, 0].sum()
                expected[i, r:r + patch, c:c + patch] += drop
    np.testing.assert_allclose(maps, np.clip(expected / covered, 0, None), atol=1e-4)
    # the mass sits on the object, beyond its share of the picture
    assert (on_object_share(maps, mask[:2]) > 1.5 * mask[0].mean()).all()


def test_patches_tile_the_image():
    assert patch_corners(64, 8) == list(range(0, 57, 8))
    assert patch_corners(10, 4) == [0, 4, 6]          # the last one flush with the edge
    assert patch_corners(6, 8) == [0]                 # a patch larger than the image


def test_on_object_share_by_hand():
    maps = np.array([[[1.0, 3.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    mask = np.array([[[True, False], [False, False]]] * 2)
    share = on_object_share(maps, mask)
    assert share[0] == 0.25 and np.isnan(share[1])  # no mass: no answer


# --- the step on a trained model -----------------------------------------------------------------

QUICK_TRAIN = {"epochs": 8, "batch_size": 16, "width": 16, "lr": 0.003, "device": "cpu",
               "augment": {"flip": False, "crop": False}, "replicates": 2}
QUICK_EVALUATE = {"bootstrap": 200, "attribution_images": 4, "occlusion_patch": 8}


def trained(exp: dict, images: Path, root: Path, mlflow_uri: str):
    """A real model trained on `images`, its runs in the MLflow server."""
    from cuelab.config import experiment_from_dict
    from cuelab.train import train

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
        experiment = experiment_from_dict(exp)
        train(experiment, images, root / "models", root / "train.json", progress=False)
    return experiment


@pytest.fixture(scope="module")
def evaluated(tiny_dataset, mlflow_server, tmp_path_factory):
    """The tiny experiment trained briefly and evaluated: its paths, experiment and summary."""
    from cuelab.evaluate import evaluate

    root = tmp_path_factory.mktemp("evaluated")
    exp = trained(tiny_experiment(train=QUICK_TRAIN | {"epochs": 2}, evaluate=QUICK_EVALUATE),
                  tiny_dataset["images"], root, mlflow_server)
    paths = {"models": root / "models", "out": root / "reports" / "evaluation",
             "metrics": root / "metrics" / "evaluate.json", "plots": root / "metrics" / "plots",
             **tiny_dataset}
    with pytest.MonkeyPatch.context() as mp:  # the store the user configured: the same
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_server)
        summary = evaluate(exp, paths["scenes"], paths["images"], paths["models"], paths["out"],
                           paths["metrics"], paths["plots"], progress=False)
    return {"paths": paths, "exp": exp, "summary": summary}


@pytest.fixture(autouse=True)
def tracking_server(request, monkeypatch):
    """Every step of these tests tracks in the real MLflow server (as a user's project would
    in its one store); tests that need another store set their own."""
    if "evaluated" in request.fixturenames or request.node.get_closest_marker("slow"):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", request.getfixturevalue("mlflow_server"))


@pytest.mark.slow
def test_evaluate_writes_results_metrics_plots_and_pictures(evaluated):
    from cuelab.data import load_split
    from cuelab.evaluate import headline_metrics
    from cuelab.scenes import read_scenes
    from cuelab.train import load_models, predict

    paths, summary = evaluated["paths"], evaluated["summary"]
    out = paths["out"]
    results = load_results(out)
    assert results.to_json() == (out / "results.json").read_text()  # file -> model -> file
    assert json.loads((out / "results.json").read_text())["schema"] == 3
    assert results.classes == ["cube", "sphere", "cone"]
    sweeps = results.probes.sweep
    assert set(sweeps) == {"color", "iso", "size"}
    assert sweeps["iso"].reference == {"cube": ["0"], "sphere": ["0"], "cone": ["0"]}
    assert sweeps["iso"].in_training == [True, False] and sweeps["iso"].models == 2
    assert sweeps["size"].levels == ["0.8", "1", "1.2"]
    assert list(results.probes.conflict) == ["shape_vs_color"]
    # the factors that indicate a class in training have a reliance; iso and size do not
    assert {r.factor for r in results.reliance} == {"color", "shape", "background"}
    assert results.not_cues == ["iso", "size"]
    for entry in results.reliance:  # every piece of evidence names its probe and measure
        for ev in entry.evidence:
            assert getattr(results.result(ev.ref), ev.ref.measure) == ev.estimate
        assert len(entry.reliance.per_model) == 2
    # iso 1600 was never in training: robustness, with its drop against iso 0
    assert "ISO noise = 1600" in [r.condition for r in results.robustness]

    # the predictions are the model's, and the statistics are theirs
    table = read_scenes(paths["scenes"])
    preds = pd.read_parquet(out / "predictions.parquet")
    assert len(preds) == 2 * ((table.split != "train").sum() - (table.split == "val").sum())
    test = load_split(paths["images"], "test")
    accuracies = []
    for r, (model, config) in enumerate(load_models(paths["models"])):
        chosen = predict(model, test.images).argmax(1)
        mine = preds[(preds.split == "test") & (preds.replicate == r)]
        assert mine.pred.tolist() == chosen.tolist() and config["replicate"] == r
        accuracies.append((chosen == test.labels).mean())
    acc = results.iid.accuracy
    assert acc.per_model == pytest.approx(accuracies, abs=1e-6)
    assert acc.value == pytest.approx(np.mean(accuracies), abs=1e-6)
    assert acc.n == 6 and acc.low <= min(accuracies) and max(accuracies) <= acc.high
    assert np.sum(results.iid.confusion) == 2 * 6  # every model's decisions

    # attribution: maps, masks and pictures, shares within [0, 1]
    att = results.attribution
    maps = np.load(out / att.maps)
    assert maps["saliency"].shape == maps["occlusion"].shape == (4, 32, 32)
    assert maps["images"].shape == (4, 32, 32, 3)
    assert np.array_equal(maps["masks"], test.masks[:4])
    for method in (att.saliency, att.occlusion):
        assert 0 <= method.on_object.value <= 1
        assert method.object_area.value == pytest.approx(test.masks[:4].mean(), abs=1e-6)
    for example in att.examples:
        for kind in ("image", "mask", "saliency", "occlusion"):
            assert (out / getattr(example, kind)).is_file()
    # the page's figures, one per probe, and the attribution examples
    assert set(results.files.figures) == {
        "sweep-color", "sweep-iso", "sweep-size", "conflict-shape_vs_color",
        "protocol-background", "confusion", "attribution"}
    assert sorted((out / "figures").iterdir()) == sorted(
        out / f for f in results.files.figures.values())
    for figure in results.files.figures.values():
        assert (out / figure).read_bytes()[:4] == b"\x89PNG"
    page = (out / "index.html").read_text()  # the trace page of this evaluation
    assert 'id="ranking"' in page and 'id="factor-color"' in page

    # the metrics dvc compares, and the plot data
    assert json.loads(paths["metrics"].read_text()) == headline_metrics(results)
    sweep = json.loads((paths["plots"] / "sweeps" / "color.json").read_text())
    assert [p["level"] for p in sweep] == ["red", "green", "blue", "orange"]
    assert [p["order"] for p in sweep] == [0, 1, 2, 3]
    assert sorted(p.name for p in (paths["plots"] / "sweeps").iterdir()) == [
        "color.json", "iso.json", "size.json"]
    confusion = pd.read_csv(paths["plots"] / "confusion.csv")  # every cell, label order
    assert confusion["count"].sum() == 2 * 6 and len(confusion) == 3 * 3
    assert list(confusion.actual.drop_duplicates()) == ["cube", "sphere", "cone"]

    text = str(summary)
    assert "IID test accuracy" in text and str(paths["metrics"]) in text
    assert summary.mlflow_run == read_run_link(paths["out"])["run_id"]


@pytest.mark.slow
def test_evaluation_is_a_nested_mlflow_run(evaluated, mlflow_server):
    from mlflow.tracking import MlflowClient

    paths = evaluated["paths"]
    results = load_results(paths["out"])
    trained, link = read_run_link(paths["models"]), read_run_link(paths["out"])
    client = MlflowClient(mlflow_server)
    run = client.get_run(link["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "evaluate tiny"
    # the settings it ran with, beside its metrics; its headline metrics on the training run
    assert run.data.params["evaluate.bootstrap"] == str(evaluated["exp"].evaluate.bootstrap)
    assert run.data.params["train.epochs"] == "2"
    training = client.get_run(trained["run_id"]).data.metrics
    assert training["cue.reliance.color"] == run.data.metrics["reliance.color"]
    assert training["cue.iid.accuracy"] == run.data.metrics["iid.accuracy"]
    assert not any(k.startswith("cue.sweep.") for k in training)  # the headline only
    # linked to the logged model of the champion replicate (MLflow 3 model ids)
    champion = next(read_run_link(f) for f in paths["models"].glob("replicate-*")
                    if read_run_link(f)["model_version"] == trained["champion"])
    model_metrics = {m.key for m in client.get_logged_model(champion["model_id"]).metrics}
    assert "iid.accuracy" in model_metrics
    assert run.data.tags["mlflow.parentRunId"] == trained["run_id"] == link["parent_run_id"]
    assert run.info.experiment_id == trained["experiment_id"] == link["experiment_id"]
    assert run.data.metrics["iid.accuracy"] == results.iid.accuracy.value
    assert "conflict.shape_vs_color.preference" in run.data.metrics
    assert run.data.metrics["models"] == 2
    assert run.data.metrics["reliance.color"] == results.reliance[
        [r.factor for r in results.reliance].index("color")].reliance.value
    logged = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"figures", "results.json", "index.html"} <= logged
    figures = {f.path for f in client.list_artifacts(run.info.run_id, "figures")}
    assert "figures/sweep-color.png" in figures and "figures/attribution.png" in figures


@pytest.mark.slow
def test_evaluation_is_deterministic(evaluated, tmp_path):
    from cuelab.evaluate import evaluate

    paths = evaluated["paths"]
    evaluate(evaluated["exp"], paths["scenes"], paths["images"], paths["models"],
             tmp_path / "out", tmp_path / "evaluate.json", tmp_path / "plots", progress=False)
    first = (paths["out"] / "results.json").read_bytes()
    again = (tmp_path / "out" / "results.json").read_bytes()
    assert first == again  # byte for byte: the run ids are apart, in mlflow-run.json
    assert read_run_link(paths["out"])["run_id"] != read_run_link(tmp_path / "out")["run_id"]
    for name in ("index.html", "predictions.parquet"):
        assert (paths["out"] / name).read_bytes() == (tmp_path / "out" / name).read_bytes()
    first = json.loads(first)
    for figure in first["files"]["figures"].values():
        assert (paths["out"] / figure).read_bytes() == (tmp_path / "out" / figure).read_bytes()
    assert paths["metrics"].read_text() == (tmp_path / "evaluate.json").read_text()
    assert (np.load(paths["out"] / "attribution" / "maps.npz")["occlusion"] ==
            np.load(tmp_path / "out" / "attribution" / "maps.npz")["occlusion"]).all()


@pytest.mark.slow
def test_dvc_shows_the_metrics_and_plots(evaluated, tmp_path):
    """The plot definitions of dvc.yaml render what evaluate writes."""
    from test_dvc import sh

    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / "dvc.yaml", repo)
    for template in ("evaluate/sweep_plot.json", "web/confusion_plot.json"):
        (repo / "src" / "cuelab" / template).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "src" / "cuelab" / template, repo / "src" / "cuelab" / template)
    shutil.copytree(evaluated["paths"]["plots"], repo / "metrics" / "plots")
    shutil.copy(evaluated["paths"]["metrics"], repo / "metrics" / "evaluate.json")
    sh("git", "init", "-q", cwd=repo)
    sh("dvc", "init", "-q", cwd=repo)
    plots = json.loads(sh("dvc", "plots", "show", "--json", cwd=repo))
    assert not plots.get("errors")
    shown = {name: p[0]["content"] for name, p in plots["data"].items()}
    assert set(shown) == {"metrics/plots/sweeps/color.json", "metrics/plots/sweeps/iso.json",
                          "metrics/plots/sweeps/size.json", "metrics/plots/confusion.csv"}
    color = shown["metrics/plots/sweeps/color.json"]
    assert color["vconcat"][1]["spec"]["encoding"]["x"]["type"] == "ordinal"
    assert [v["level"] for v in color["data"]["values"]] == ["red", "green", "blue", "orange"]
    assert {v["factor"] for v in color["data"]["values"]} == {"Colour"}
    assert len(shown["metrics/plots/confusion.csv"]["data"]["values"]) == 3 * 3
    metrics = json.loads(sh("dvc", "metrics", "show", "--json", cwd=repo))
    shown = next(iter(metrics.values()))["data"]["metrics/evaluate.json"]["data"]
    assert 0 <= shown["iid"]["accuracy"] <= 1 and "shape_vs_color" in shown["conflict"]


@pytest.mark.reliability(2)
@pytest.mark.slow
def test_a_model_of_other_classes_is_refused(evaluated):
    from cuelab.config import experiment_from_dict
    from cuelab.evaluate import evaluate

    paths = evaluated["paths"]
    other = tiny_experiment(label={"factor": "shape", "levels": ["cube", "torus", "cone"]})
    del other["factors"]["texture"]["correlation"]  # its pairs name the classes
    other = experiment_from_dict(other)
    with pytest.raises(CuelabError, match=r"trained with classes \['cube', 'sphere', 'cone'\]"):
        evaluate(other, paths["scenes"], paths["images"], paths["models"], "unused",
                 "unused.json", "unused", progress=False)


@pytest.mark.reliability(2)
@pytest.mark.slow
@pytest.mark.parametrize("key, value, message", [
    ("input_size", 16, r"trained with input size \(px\) 16; .* have 32"),
    ("dataset_version", "0123.dir", r"trained with dataset version '0123.dir'"),
    ("experiment", "other", r"trained with experiment 'other'; .* have 'tiny'")])
def test_a_model_of_other_data_is_refused(evaluated, tmp_path, key, value, message):
    from cuelab.evaluate import evaluate

    paths = evaluated["paths"]
    models = tmp_path / "models"
    shutil.copytree(paths["models"], models)
    config = models / "replicate-1" / "model.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {key: value}))
    with pytest.raises(CuelabError, match=r"replicate-1: " + message):
        evaluate(evaluated["exp"], paths["scenes"], paths["images"], models, tmp_path / "out",
                 tmp_path / "e.json", tmp_path / "plots", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.reliability(2)
@pytest.mark.slow
def test_a_copied_model_logs_to_the_configured_store(evaluated, tmp_path, monkeypatch,
                                                     mlflow_server):
    """The store the user configured, not the one recorded beside the model."""
    from mlflow.tracking import MlflowClient

    from cuelab.evaluate import evaluate

    paths = evaluated["paths"]
    models = tmp_path / "models"
    shutil.copytree(paths["models"], models)
    before = len(MlflowClient(mlflow_server).search_runs(
        [read_run_link(paths["out"])["experiment_id"]]))
    store = f"sqlite:///{tmp_path / 'mine.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    evaluate(evaluated["exp"], paths["scenes"], paths["images"], models, tmp_path / "out",
             tmp_path / "e.json", tmp_path / "plots", progress=False)
    link = read_run_link(tmp_path / "out")
    assert link["tracking_uri"] == store and link["parent_run_id"] is None
    run = MlflowClient(store).get_run(link["run_id"])
    assert run.data.tags["cuelab.training_run"] == read_run_link(models)["run_id"]
    after = len(MlflowClient(mlflow_server).search_runs(
        [read_run_link(paths["out"])["experiment_id"]]))
    assert after == before  # nothing written into the store the model came from


@pytest.mark.slow
def test_images_missing_from_the_dataset_are_named(evaluated):
    from cuelab.evaluate import predict_probes
    from cuelab.scenes import read_scenes
    from cuelab.train import load_models

    paths = evaluated["paths"]
    table = read_scenes(paths["scenes"])
    extra = table[table.split == "test"].head(1).assign(image_id="test-999999")
    model, _ = load_models(paths["models"])[0]
    with pytest.raises(CuelabError, match="1 images of the scenes table are not in .*"
                                          r"test-999999.*run `cuelab sensor`"):
        predict_probes(model, pd.concat([table, extra]), paths["images"], progress=False)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:You may be attemping to run a task:RuntimeWarning")
def test_the_component_runs_in_kfp_local(evaluated, tmp_path, monkeypatch):
    """The kfp component around the same step: metrics, confusion matrix, page, evaluation."""
    from typing import NamedTuple

    from kfp import dsl, local

    from cuelab.kubeflow.components.evaluate import evaluate as evaluate_component

    paths = evaluated["paths"]
    Outputs = NamedTuple("Outputs", metrics=dsl.Metrics,  # noqa: UP014 (kfp reads it)
                         classification=dsl.ClassificationMetrics, evaluation=dsl.Dataset)

    @dsl.pipeline
    def only_evaluate(params_yaml: str) -> Outputs:
        imported = {name: dsl.importer(artifact_uri=str(paths[name]), artifact_class=kind)
                    for name, kind in (("scenes", dsl.Dataset), ("images", dsl.Dataset),
                                       ("models", dsl.Model))}
        task = evaluate_component(params_yaml=params_yaml, scenes=imported["scenes"].output,
                                  images=imported["images"].output,
                                  model=imported["models"].output)
        return Outputs(task.outputs["metrics"], task.outputs["classification"],
                       task.outputs["evaluation"])

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path))
    run = only_evaluate(params_yaml=yaml.safe_dump(evaluated["exp"].model_dump(mode="json")))
    evaluation = Path(run.outputs["evaluation"].path)
    results = load_results(evaluation)
    headline = json.loads((evaluation / "metrics.json").read_text())
    assert (evaluation / "plots" / "confusion.csv").is_file()
    assert run.outputs["metrics"].metadata["iid.accuracy"] == headline["iid"]["accuracy"]
    confusion = run.outputs["classification"].metadata["confusionMatrix"]
    assert [c["displayName"] for c in confusion["annotationSpecs"]] == ["cube", "sphere",
                                                                         "cone"]
    assert [r["row"] for r in confusion["rows"]] == results.iid.confusion
    page = next(tmp_path.glob("*/evaluate/html"))
    assert page.read_text() == (evaluation / "index.html").read_text()
    assert read_run_link(evaluation)["parent_run_id"] == read_run_link(paths["models"])["run_id"]


# --- planted shortcuts: known answers, real renders, real training ---------------------------------

LEVELS = {"color": ["red", "green", "blue"], "shape": ["cube", "sphere", "cone"],
          "texture": ["none", "checker", "stripes"]}
SMALL = {"render": {"resolution": 32, "samples": 1, "device": "cpu", "chunk_size": 64},
         "train": QUICK_TRAIN | {"replicates": 3}, "evaluate": QUICK_EVALUATE}


def run_experiment(exp: dict, tmp_path: Path, mlflow_server: str):
    """sample -> render -> sensor -> train (3 replicates) -> evaluate: the results."""
    from cuelab.evaluate import evaluate
    from cuelab.render import render
    from cuelab.sampling import sample
    from cuelab.sensor import sensor

    params = write_params(tmp_path / "params.yaml", exp)
    scenes, images = tmp_path / "scenes.parquet", tmp_path / "images"
    sample(params, scenes)
    render(params, scenes, tmp_path / "renders", workers=2, progress=False)
    sensor(params, scenes, tmp_path / "renders", images, progress=False)
    experiment = trained(exp, images, tmp_path, mlflow_server)
    summary = evaluate(experiment, scenes, images, tmp_path / "models", tmp_path / "evaluation",
                       tmp_path / "evaluate.json", tmp_path / "plots", progress=False)
    return summary, load_results(tmp_path / "evaluation")


def shortcut_experiment(cue: str) -> dict:
    """Only `cue` predicts the class; the other of shape and colour is drawn at random (rho 0:
    its pairing with the classes is used by the conflict images alone). Nothing else varies."""
    other = {"color": "shape", "shape": "color"}[cue]
    return {"name": f"only-{cue}", "seed": 11,
            "label": {"factor": cue, "levels": LEVELS[cue]},
            "factors": {other: {"levels": LEVELS[other], "correlation": {"rho": 0.0}}},
            "splits": {"train": 120, "val": 30, "test": 30},
            "conflicts": [{"factors": [cue, other], "images": 60}],
            **SMALL, "train": QUICK_TRAIN}


@pytest.mark.slow
@pytest.mark.parametrize("cue", ["color", "shape"])
def test_a_planted_shortcut_is_found(cue, tmp_path, mlflow_server):
    summary, results = run_experiment(shortcut_experiment(cue), tmp_path, mlflow_server)
    other = {"color": "shape", "shape": "color"}[cue]
    # the conflict is (cue, other): the preference is for the planted cue
    assert summary.preferences[f"{cue}_vs_{other}"] >= 0.9
    assert summary.accuracy >= 0.9
    assert summary.ranking[0][0] == cue and summary.ranking[1][0] == other
    conflict = results.probes.conflict[f"{cue}_vs_{other}"]
    assert conflict.share_b.value <= 0.1


@pytest.mark.slow
def test_a_model_with_no_cue_relies_on_nothing_but_the_label(tmp_path, mlflow_server):
    """Every factor independent of the class (rho 0): no reliance but the label's, while what
    training never had still shows up as robustness."""
    exp = {"name": "no-cue", "seed": 5, "label": {"factor": "shape", "levels": LEVELS["shape"]},
           "factors": {"color": {"levels": LEVELS["color"], "correlation": {"rho": 0.0}},
                       "background": {"levels": ["studio", "sky", "sunset"],
                                      "correlation": {"rho": 0.0}}},
           "splits": {"train": 150, "val": 30, "test": 30},
           "sweeps": [{"factor": "shape", "base_scenes": 30},
                      {"factor": "color", "levels": ["red", "green", "blue", "orange"],
                       "base_scenes": 30},
                      {"factor": "iso", "levels": [0, 6400], "base_scenes": 30}],
           "conflicts": [{"factors": ["shape", "color"], "images": 60}],
           "background_protocol": {"base_scenes": 40,
                                   "variants": ["original", "only_fg", "mixed_same",
                                                "mixed_rand"]},
           **SMALL}
    _, results = run_experiment(exp, tmp_path, mlflow_server)
    reliance = {r.factor: r.reliance for r in results.reliance}
    assert reliance["shape"].low > 0  # the label
    assert {"color", "background"} <= set(reliance)
    for factor, e in reliance.items():
        if factor != "shape":
            assert e.low <= 0 <= e.high, (factor, e)
    unseen = [r.condition for r in results.robustness]
    assert "ISO noise = 6400" in unseen and "colour = orange" in unseen
    assert "the object alone on black (Only-FG)" in unseen


@pytest.mark.slow
def test_a_planted_colour_shortcut_is_ranked_first_across_replicates(tmp_path, mlflow_server):
    exp = {"name": "colour-shortcut", "seed": 8,
           "label": {"factor": "shape", "levels": LEVELS["shape"]},
           "factors": {"color": {"levels": LEVELS["color"], "correlation": {"rho": 1.0}}},
           "splits": {"train": 150, "val": 30, "test": 30},
           "sweeps": [{"factor": "shape", "base_scenes": 30},
                      {"factor": "color", "base_scenes": 30}],
           "conflicts": [{"factors": ["shape", "color"], "images": 60}], **SMALL}
    _, results = run_experiment(exp, tmp_path, mlflow_server)
    first = results.reliance[0]
    assert first.factor == "color" and first.reliance.low > 0
    assert len(results.models) == 3
    for entry in results.reliance:  # never narrower than the models' own spread
        e = entry.reliance
        assert len(e.per_model) == 3
        assert e.low <= min(e.per_model) and e.high >= max(e.per_model)


@pytest.mark.slow
def test_with_three_perfect_cues_a_third_cue_does_not_decide_a_conflict(tmp_path,
                                                                       mlflow_server):
    """Shape, colour and texture all say the class: in shape-vs-texture images colour is held
    balanced between the two classes, so it cannot send decisions to a class of its own."""
    exp = {"name": "three-cues", "seed": 9,
           "label": {"factor": "shape", "levels": LEVELS["shape"]},
           "factors": {"color": {"levels": LEVELS["color"], "correlation": {"rho": 1.0}},
                       "texture": {"levels": LEVELS["texture"], "correlation": {"rho": 1.0}}},
           "splits": {"train": 150, "val": 30, "test": 30},
           "conflicts": [{"factors": ["shape", "texture"], "images": 90}], **SMALL}
    _, results = run_experiment(exp, tmp_path, mlflow_server)
    c = results.probes.conflict["shape_vs_texture"]
    assert c.held == {"color": "balanced"}
    assert c.third_cue_share.value <= c.third_cue_chance
    assert "color" in c.pulls and len(c.pulls["color"].per_model) == 3


@pytest.mark.slow
def test_a_planted_sensor_shortcut_is_found_and_ranked_first(tmp_path, mlflow_server):
    """ISO noise says the class (small objects: the shape is harder to see than the noise)."""
    exp = {"name": "iso-shortcut", "seed": 12,
           "label": {"factor": "shape", "levels": LEVELS["shape"]},
           "factors": {"iso": {"levels": [0, 3200, 12800], "correlation": {"rho": 1.0}},
                       "size": {"range": [0.35, 0.45]}},
           "splits": {"train": 150, "val": 30, "test": 30},
           "sweeps": [{"factor": "shape", "base_scenes": 30},
                      {"factor": "iso", "base_scenes": 30}],
           "conflicts": [{"factors": ["shape", "iso"], "images": 60}], **SMALL}
    _, results = run_experiment(exp, tmp_path, mlflow_server)
    first = results.reliance[0]
    assert first.factor == "iso" and first.reliance.low > 0
    assert results.probes.sweep["iso"].in_training == [True, True, True]
