"""The trace report: sentences from numbers, the page (self-contained, every section, ranked as
the results say), its errors, the CLI, and the real evaluate -> report chain on the tiny dataset."""

import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_experiment, write_params
from cuelab.cli import main
from cuelab.errors import CuelabError
from cuelab.evaluate.stats import Estimate, importance_ranking
from cuelab.report import load_results, report
from cuelab.report import sentences as say

CLASSES = ["cube", "sphere", "cone"]


# --- a results.json that follows schema 1, with the numbers a test chooses ----------------------

def est(value, low=None, high=None, n=100) -> Estimate:
    low = value - 0.04 if low is None else low
    high = value + 0.04 if high is None else high
    return Estimate(value, low, high, n)


def sweep(factor, levels, reference, flips, accuracies, stage="scene", n=40) -> dict:
    """flips: the flip rate at each level (None at the reference), intervals of +-0.04 cut at 0."""
    worst = int(np.nanargmax([np.nan if f is None else f for f in flips]))
    return {"factor": factor, "stage": stage, "levels": levels,
            "reference": {c: reference for c in CLASSES}, "base_scenes": n,
            "accuracy": [est(a, n=n) for a in accuracies],
            "flip_rate": [Estimate(np.nan, np.nan, np.nan, n) if f is None
                          else est(f, max(0, f - 0.04), n=n) for f in flips],
            "reference_accuracy": est(accuracies[levels.index(reference)], n=n),
            "max_accuracy_drop": est(accuracies[levels.index(reference)] - min(accuracies), n=n),
            "max_accuracy_drop_level": levels[int(np.argmin(accuracies))],
            "max_flip_rate": est(flips[worst], max(0, flips[worst] - 0.04), n=n),
            "max_flip_rate_level": levels[worst],
            "flip_rate_all_pairs": est(0.2, n=n)}


def conflict(a, b, preference: Estimate, images=200, share_other=0.0) -> dict:
    decided = 1 - share_other
    k = len(CLASSES)
    decisions = np.zeros((k, k, k), int)
    for i in range(k):
        for j in range(k):
            if i != j and not np.isnan(preference.value):
                decisions[i, j, i] = round(20 * decided * preference.value)
                decisions[i, j, j] = round(20 * decided * (1 - preference.value))
    return {"factors": [a, b], "images": images, "preference": preference,
            "share_a": est(decided * preference.value, n=images),
            "share_b": est(decided * (1 - preference.value), n=images),
            "share_other": est(share_other, max(0, share_other - 0.02), share_other + 0.02,
                               n=images),
            "decisions": decisions.tolist(),
            "preference_matrix": [[None if i == j else preference.value for j in range(k)]
                                  for i in range(k)]}


def synthetic_results(preference=est(0.13, 0.09, 0.17), gap=est(0.25, 0.18, 0.32),
                      color_flip=0.6, **overrides) -> dict:
    """The tiny experiment's evaluation: preference is shape's over colour."""
    sweeps = {
        "color": sweep("color", ["red", "green", "blue", "orange"], "red",
                       [None, color_flip, color_flip - 0.1, 0.3], [0.95, 0.5, 0.55, 0.7]),
        "iso": sweep("iso", ["0", "1600"], "0", [None, 0.005], [0.9, 0.89], stage="sensor"),
        "size": sweep("size", ["0.8", "1", "1.2"], "1", [0.08, None, 0.1], [0.85, 0.9, 0.86]),
    }
    conflicts = {"shape_vs_color": conflict("shape", "color", preference)}
    background = {"variants": ["original", "only_fg", "mixed_same", "mixed_rand"],
                  "base_scenes": 100,
                  "accuracy": {"original": est(0.95), "only_fg": est(0.8),
                               "mixed_same": est(0.93), "mixed_rand": est(0.93 - gap.value)},
                  "gap": gap, "only_fg_drop": est(0.15)}
    results = {
        "schema": 1, "experiment": "tiny", "classes": CLASSES, "seed": 3,
        "bootstrap": {"resamples": 1000, "confidence": 0.95},
        "model": {"models_dir": "models", "architecture": "simple_cnn", "width": 32,
                  "input_size": 32, "num_classes": 3, "classes": CLASSES, "best_epoch": 4,
                  "run_id": "abc123", "tracking_uri": "sqlite:///mlflow.db",
                  "train": {"epochs": 5}},
        "iid": {"accuracy": est(0.97, 0.94, 0.99, 300),
                "confusion": [[98, 1, 1], [2, 97, 1], [0, 3, 97]],
                "class_accuracy": {"cube": 0.98, "sphere": 0.97, "cone": 0.97}},
        "sweeps": sweeps, "conflicts": conflicts, "background": background,
        "attribution": None,
        "importance": importance_ranking(sweeps, conflicts, background),
        "importance_definition": "A factor's importance is the largest share ...",
        "files": {"predictions": "predictions.parquet", "summary": "index.html",
                  "figures": {}},
        "tracking": {"tracking_uri": "sqlite:///mlflow.db", "experiment_id": "1",
                     "run_id": "eval456", "parent_run_id": "abc123"},
    }
    results.update(overrides)
    return plain(results)


def plain(obj):
    """As read back from results.json: estimates as dictionaries."""
    return json.loads(json.dumps(obj, default=lambda e: e.to_dict()))


def write_evaluation(folder: Path, results: dict, attribution: bool = True) -> Path:
    """results.json, and attribution maps of a few made-up images, as `evaluate` lays them out."""
    folder.mkdir(parents=True, exist_ok=True)
    if attribution:
        rng = np.random.default_rng(0)
        n, size = 6, 32
        images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        masks = np.zeros((n, size, size), bool)
        masks[:, 8:24, 10:22] = True
        sal = rng.random((n, size, size)).astype(np.float32) + 2 * masks
        (folder / "attribution").mkdir(exist_ok=True)
        np.savez_compressed(folder / "attribution" / "maps.npz",
                            image_ids=np.array([f"test-{i:05d}" for i in range(n)]),
                            labels=np.array([0, 1, 2, 0, 1, 2]), preds=np.array([0, 1, 2, 1, 1, 0]),
                            images=images, masks=masks, saliency=sal, occlusion=sal ** 2)
        share = est(0.6, 0.55, 0.65, n)
        results = {**results, "attribution": {
            "images": n, "patch": 8, "split": "test",
            "saliency": {"on_object": share, "object_area": est(0.19, 0.18, 0.2, n),
                         "ratio": est(3.1, 2.9, 3.3, n)},
            "occlusion": {"on_object": est(0.2, 0.1, 0.3, n),
                          "object_area": est(0.19, 0.18, 0.2, n),
                          "ratio": est(1.05, 0.6, 1.5, n)},
            "maps": "attribution/maps.npz", "examples": []}}
        results = plain(results)
    (folder / "results.json").write_text(json.dumps(results, indent=1))
    return folder


@pytest.fixture
def params(tmp_path) -> Path:
    return write_params(tmp_path / "params.yaml", tiny_experiment())


def render_page(tmp_path, params, results, **kw) -> str:
    evaluation = write_evaluation(tmp_path / "evaluation", results, **kw)
    out = tmp_path / "trace_report.html"
    report(params, evaluation, out, validation=None, train_metrics=None)
    return out.read_text()


class Tags(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def text_of(page: str) -> str:
    """The page as a reader sees it: no tags, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", page)).split())


def tags_of(page: str) -> list[tuple[str, dict]]:
    parser = Tags()
    parser.feed(page)
    return parser.tags


# --- sentences ---------------------------------------------------------------------------------

def test_a_preference_is_said_with_its_number_and_interval():
    c = synthetic_results(preference=est(0.87, 0.83, 0.91))["conflicts"]["shape_vs_color"]
    assert say.conflict_sentence(c) == ("the model follows shape over colour in 87% [83–91%] "
                                        "of shape-vs-colour conflict images")
    # from colour's side, the same verdict: colour loses
    assert "follows shape over colour in 87% [83–91%]" in say.conflict_sentence(c, "color")


def test_colour_and_shape_preferring_models_get_opposite_verdicts():
    colour = synthetic_results(preference=est(0.13, 0.09, 0.17))["conflicts"]["shape_vs_color"]
    shape = synthetic_results(preference=est(0.87, 0.83, 0.91))["conflicts"]["shape_vs_color"]
    assert "follows colour over shape in 87% [83–91%]" in say.conflict_sentence(colour, "color")
    assert "follows shape over colour in 87% [83–91%]" in say.conflict_sentence(shape, "color")


def test_careful_wording_when_the_data_cannot_decide():
    def sentence(**kw):
        return say.conflict_sentence(plain(conflict("shape", "color", **kw)))

    assert sentence(preference=est(0.55, 0.45, 0.65)).startswith(
        "no clear preference between shape and colour")
    assert "wide interval: only 30 images" in sentence(preference=est(0.8, 0.55, 0.95, 30),
                                                        images=30)
    assert sentence(preference=est(0.9, 0.6, 1.0, 12), images=12).startswith(
        "too few shape-vs-colour conflict images to tell: only 12 of 12")
    assert "undefined" in sentence(preference=Estimate(np.nan, np.nan, np.nan, 10), images=10,
                                   share_other=1.0)
    assert "10% went to a class neither cue indicates" in sentence(
        preference=est(0.9, 0.85, 0.95), share_other=0.1)


def test_sweep_background_and_attribution_sentences():
    r = synthetic_results(color_flip=0.6)
    assert say.sweep_sentence(r["sweeps"]["color"]) == (
        "predictions change in 60% [56–64%] of 40 base scenes when colour goes from red to "
        "green; accuracy falls from 95% at the reference to 50% at green (a drop of "
        "45% [41–49%])")
    assert say.sweep_sentence(r["sweeps"]["iso"]).startswith(
        "predictions barely move when ISO noise changes: at most 0% [0–4%] of 40")
    assert "0 (noise-free ideal sensor)" in say.sweep_sentence(r["sweeps"]["iso"])
    assert say.background_sentence(r["background"]).startswith(
        "accuracy falls from 93% to 68% when the background is drawn for a random class "
        "instead of the object's own (gap 25% [18–32%])")
    none = synthetic_results(gap=est(0.01, -0.03, 0.05))["background"]
    assert "barely changes when the background is drawn for a random class instead of the " \
        "object's own (93% against 92%; gap 1% [−3% to 5%]): no sign the model reads the " \
        "background" in say.background_sentence(none)
    unsure = synthetic_results(gap=est(0.2, -0.05, 0.45))["background"]
    assert "accuracy goes from 93% to 73% when the background is drawn for a random class " \
        "instead of the object's own, but that gap of 20% [−5% to 45%] could be chance" \
        in say.background_sentence(unsure)
    assert "the map concentrates on the object" in say.attribution_sentence(
        "saliency", plain({"on_object": est(0.6), "object_area": est(0.2),
                           "ratio": est(3.0, 2.5, 3.5)}))
    assert say.pct(-0.031) == "−3%"
    assert say.interval({"low": 0.826, "high": 0.914}) == "[83–91%]"


# --- the page ------------------------------------------------------------------------------------

def test_the_page_is_self_contained(tmp_path, params):
    page = render_page(tmp_path, params, synthetic_results())
    tags = tags_of(page)
    for tag, attrs in tags:
        for key in ("src", "href"):
            value = attrs.get(key) or ""
            assert not value.startswith(("http://", "https://", "//")), (tag, key, value)
        assert tag != "link", attrs
        assert not (tag == "script" and "src" in attrs)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    images = [attrs["src"] for tag, attrs in tags if tag == "img"]
    assert len(images) >= 6 + 4 * 6  # figures, and four tiles per attribution example
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert all(attrs["href"].startswith("#") for tag, attrs in tags if tag == "a")


def test_every_section_is_there_and_the_verdict_comes_first(tmp_path, params):
    page = render_page(tmp_path, params, synthetic_results())
    ids = [attrs["id"] for _, attrs in tags_of(page) if "id" in attrs]
    assert ids[0] == "verdict"
    assert ids[1:3] == ["ranking", "factor-color"]
    for section in ("factor-shape", "factor-background", "factor-size", "factor-iso", "iid",
                    "attribution", "experiment", "reading"):
        assert section in ids
    verdict = text_of(page[page.index('id="verdict"'):page.index('id="ranking"')])
    assert "The model follows colour over shape in 87% [83–91%]" in verdict
    assert "Accuracy falls from 93% to 68%" in verdict  # the background, in the top findings
    assert "Texture was paired with the class in training (ρ = 0.5)" in verdict  # not probed
    assert "simple_cnn" in page and "eval456" in page and "abc123" in page  # model, MLflow
    assert "rho: 0.8" in page  # the params file as written
    assert "✗ chose" in page and "on object" in page  # attribution examples, both kinds


def test_the_ranking_follows_importance(tmp_path, params):
    for preference in (est(0.13), est(0.9)):  # colour wins, then shape wins
        results = synthetic_results(preference=preference)
        page = render_page(tmp_path, params, results)
        expected = [r["factor"] for r in results["importance"]]
        table = page[page.index('<table class="ranking">'):]
        table = table[:table.index("</table>")]
        assert re.findall(r"href='#factor-([a-z_]+)'", table) == expected
        sections = re.findall(r'<section class="factor" id="factor-([a-z_]+)"', page)
        assert sections[:len(expected)] == expected
    assert expected[0] == "shape"  # and colour falls behind the background


def test_opposite_models_get_opposite_verdicts_on_the_page(tmp_path, params):
    colour = text_of(render_page(tmp_path, params,
                                 synthetic_results(preference=est(0.1, 0.06, 0.14))))
    shape = text_of(render_page(tmp_path, params,
                                synthetic_results(preference=est(0.9, 0.86, 0.94))))
    assert "The model follows colour over shape in 90% [86–94%]" in colour
    assert "The model follows shape over colour in 90% [86–94%]" in shape
    assert "follows shape over colour" not in colour and "follows colour over shape" not in shape


def test_missing_probes_are_said_not_hidden(tmp_path, params):
    results = synthetic_results(background=None, conflicts={})
    results["importance"] = [r for r in results["importance"]
                             if r["factor"] not in ("background", "shape")]
    page = render_page(tmp_path, params, results, attribution=False)
    assert 'id="factor-background"' not in page
    page = text_of(page)
    assert "No attribution was measured" in page
    # background was correlated (rho 0.7) and nothing probes it any more
    assert "Background was paired with the class in training (ρ = 0.7)" in page


def test_the_page_is_a_pure_function_written_atomically(tmp_path, params):
    evaluation = write_evaluation(tmp_path / "evaluation", synthetic_results())
    first = report(params, evaluation, tmp_path / "a.html", None, None)
    report(params, evaluation, tmp_path / "b.html", None, None)
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "b.html", "evaluation",
                                                           "params.yaml"]
    assert "colour: the model follows colour over shape" in str(first).lower()


def test_validation_and_training_summaries_are_shown(tmp_path, params):
    evaluation = write_evaluation(tmp_path / "evaluation", synthetic_results(), attribution=False)
    (tmp_path / "validation.json").write_text(json.dumps(
        {"passed": True, "expectations": 41, "failed": 0, "images": 372, "failures": []}))
    (tmp_path / "train.json").write_text(json.dumps(
        {"val_accuracy": 0.9612, "best_epoch": 4, "device": "cpu"}))
    report(params, evaluation, tmp_path / "r.html", tmp_path / "validation.json",
           tmp_path / "train.json")
    page = (tmp_path / "r.html").read_text()
    assert "passed: 41 expectations, 0 failed, 372 images" in page
    assert "0.9612" in page and "best_epoch" in page


# --- errors and the CLI ----------------------------------------------------------------------

def test_missing_or_foreign_results_give_a_clear_error(tmp_path, params):
    with pytest.raises(CuelabError, match=r"results.json is missing\): run `cuelab evaluate` "
                                          "first"):
        report(params, tmp_path / "nowhere", tmp_path / "r.html")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.json").write_text('{"schema": 0}')
    with pytest.raises(CuelabError, match="got results schema 0; this version of cuelab reads "
                                          "schema 1"):
        load_results(tmp_path / "old")
    other = write_params(tmp_path / "other.yaml", tiny_experiment(name="other"))
    write_evaluation(tmp_path / "evaluation", synthetic_results(), attribution=False)
    with pytest.raises(CuelabError, match="the evaluation is of experiment 'tiny'"):
        report(other, tmp_path / "evaluation", tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_cli(tmp_path, params, capsys):
    evaluation = write_evaluation(tmp_path / "evaluation", synthetic_results(), attribution=False)
    out = tmp_path / "reports" / "trace.html"
    assert main(["report", "--params", str(params), "--evaluation", str(evaluation),
                 "--out", str(out), "--validation", str(tmp_path / "absent.json")]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "Colour: the model follows colour over shape" in printed
    assert main(["report", "--params", str(params), "--evaluation", str(tmp_path / "none"),
                 "--out", str(out)]) == 2
    assert "cuelab report: error: no evaluation results" in capsys.readouterr().err


@pytest.mark.skipif(not shutil.which("chromium"), reason="needs Chromium (apt install chromium)")
def test_chromium_renders_the_page_offline(tmp_path, params):
    page = render_page(tmp_path, params, synthetic_results())
    html = tmp_path / "trace_report.html"
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                    "--window-size=1200,3000", html.as_uri()],
                   check=True, capture_output=True, timeout=120)
    assert shot.stat().st_size > 20_000 and page


# --- the component, and the real chain on the tiny dataset --------------------------------------

def test_component_in_kfp_local(tmp_path, params):
    """The evaluation folder imported as the evaluate task's artifact would arrive."""
    import sys

    from kfp import dsl, local

    from conftest import ROOT

    sys.path.insert(0, str(ROOT))
    from components.report import report as report_component

    evaluation = write_evaluation(tmp_path / "evaluation", synthetic_results(), attribution=False)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"))

    @dsl.pipeline
    def report_only(params_yaml: str, evaluation_uri: str) -> dsl.HTML:
        imported = dsl.importer(artifact_uri=evaluation_uri, artifact_class=dsl.Dataset)
        return report_component(params_yaml=params_yaml,
                                evaluation=imported.output).outputs["html"]

    run = report_only(params_yaml=params.read_text(), evaluation_uri=str(evaluation))
    page = Path(run.outputs["Output"].path).read_text()
    assert "The model follows colour over shape in 87%" in text_of(page)
    assert "rho: 0.8" in page  # the params as written, not re-dumped


def test_report_on_a_real_evaluation(tiny_dataset, tmp_path, monkeypatch):
    """sample -> render -> sensor (the fixture) -> train (2 epochs) -> evaluate -> report."""
    import yaml

    from cuelab.evaluate import evaluate
    from cuelab.train import train

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = yaml.safe_load(tiny_dataset["params"].read_text())
    exp["train"] = {"epochs": 2, "batch_size": 16, "device": "cpu"}
    exp["evaluate"] = {"bootstrap": 200, "attribution_images": 6, "occlusion_patch": 8}
    params = write_params(tmp_path / "params.yaml", exp)
    train(params, tiny_dataset["images"], tmp_path / "models", tmp_path / "train.json",
          progress=False)
    evaluate(params, tiny_dataset["scenes"], tiny_dataset["images"], tmp_path / "models",
             tmp_path / "evaluation", tmp_path / "evaluate.json", tmp_path / "plots",
             progress=False)
    summary = report(params, tmp_path / "evaluation", tmp_path / "trace_report.html",
                     validation=None, train_metrics=tmp_path / "train.json")
    page = (tmp_path / "trace_report.html").read_text()
    results = json.loads((tmp_path / "evaluation" / "results.json").read_text())
    ids = [attrs.get("id") for _, attrs in tags_of(page)]
    for section in ["verdict", "ranking", "iid", "attribution", "experiment"] + [
            f"factor-{f}" for f in ("color", "iso", "size", "shape", "background")]:
        assert section in ids
    ranked = re.findall(r'<section class="factor" id="factor-([a-z_]+)"', page)
    assert ranked[:len(results["importance"])] == [r["factor"] for r in results["importance"]]
    # 12 conflict images: too few decisions for a verdict, and the page says so
    assert "Too few shape-vs-colour conflict images to tell" in text_of(page)
    assert "best_val_accuracy" in page  # train.json
    runs = [(results["tracking"] or {}).get(k) for k in ("run_id", "parent_run_id")]
    assert all(run in page for run in runs if run)
    assert all(src.startswith("data:image/png;base64,")
               for tag, attrs in tags_of(page) if tag == "img" for src in [attrs["src"]])
    cards = page.count("<div class='card'>")  # up to 4 right and 4 wrong of the 6 images
    assert cards >= 4
    assert len([t for t, _ in tags_of(page) if t == "img"]) == 6 + 4 * cards  # + 6 figures
    assert str(summary).startswith(f"wrote {tmp_path / 'trace_report.html'}")
