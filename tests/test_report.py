"""The trace report: sentences from numbers, the page (self-contained, every section, ranked as
the results say), results.json (its model, its errors), the CLI, and the real evaluate -> report
chain on the tiny dataset."""

import base64
import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from conftest import BIN, tiny_experiment, write_params
from cuelab.cli import main
from cuelab.errors import CuelabError
from cuelab.evaluate.stats import reliance_ranking, robustness_table
from cuelab.probes import PROBE_KINDS
from cuelab.probes import conflict as conflict_kind
from cuelab.probes import protocol as protocol_kind
from cuelab.probes import sweep as sweep_kind
from cuelab.probes.conflict import ConflictResult
from cuelab.probes.estimate import Estimate
from cuelab.probes.protocol import ProtocolResult
from cuelab.probes.sweep import SweepResult
from cuelab.report import report
from cuelab.report import sentences as say
from cuelab.report import words
from cuelab.results import AttributionResult, AttributionShares, Results, load_results

CLASSES = ["cube", "sphere", "cone"]


# --- a results.json (schema 3) with the numbers a test chooses -----------------------------------

def est(value, low=None, high=None, n=100, per_model=()) -> Estimate:
    low = value - 0.04 if low is None else low
    high = value + 0.04 if high is None else high
    return Estimate.of(value, low, high, n, per_model or [value - 0.01, value, value + 0.01])


UNDEFINED = Estimate.of(np.nan, np.nan, np.nan, 40)


def sweep(factor, levels, reference, flips, accuracies, inside, shift=None, stage="scene",
          n=40, training="the levels") -> SweepResult:
    """flips: the flip rate at each level (None at the reference), intervals of +-0.04 cut at 0;
    inside: which levels training had."""
    acc_inside = float(np.mean([a for a, i in zip(accuracies, inside) if i]))
    return SweepResult(
        factor=factor, stage=stage, levels=levels, in_training=inside, training=training,
        indicated=[None] * len(levels), reference={c: [reference] for c in CLASSES},
        base_scenes=n, models=3, accuracy=[est(a, n=n) for a in accuracies],
        flip_rate=[UNDEFINED if f is None else est(f, max(0, f - 0.04), n=n) for f in flips],
        accuracy_in_training=est(acc_inside, n=n),
        accuracy_drop=[None if i else est(acc_inside - a, n=n)
                       for a, i in zip(accuracies, inside)],
        flip_rate_in_training=est(0.2, n=n) if sum(inside) > 1 else UNDEFINED,
        cue_shift=shift)


def conflict(a, b, preference: Estimate, images=200, share_other=0.0, pull=None
             ) -> ConflictResult:
    decided = 1 - share_other
    p = np.nan if preference.value is None else preference.value
    k = len(CLASSES)
    decisions = np.zeros((k, k, k), int)
    for i in range(k):
        for j in range(k):
            if i != j and not np.isnan(p):
                decisions[i, j, i] = round(20 * decided * p)
                decisions[i, j, j] = round(20 * decided * (1 - p))
    return ConflictResult(
        factors=(a, b), images=images, models=3,
        held={"texture": "balanced", "background": "neutral"},
        preference=preference,
        share_a=est(decided * p, n=images), share_b=est(decided * (1 - p), n=images),
        share_other=est(share_other, max(0, share_other - 0.02), share_other + 0.02, n=images),
        excess_a=est(decided * p - share_other, n=images),
        excess_b=est(decided * (1 - p) - share_other, n=images),
        third_cue_share=est(0.0, 0.0, 0.0, n=images), third_cue_chance=0.0,
        pulls={"texture": pull or est(0.02, -0.03, 0.07, n=images)},
        decisions=decisions.tolist(),
        preference_matrix=[[None if i == j else preference.value for j in range(k)]
                           for i in range(k)])


def protocol(gap: Estimate) -> ProtocolResult:
    return ProtocolResult(
        variants=["original", "only_fg", "mixed_same", "mixed_rand"], base_scenes=100,
        models=3, chance=1 / 3,
        accuracy={"original": est(0.95), "only_fg": est(0.8), "mixed_same": est(0.93),
                  "mixed_rand": est(0.93 - gap.value)},
        gap=gap, only_fg_drop=est(0.15))


def synthetic_results(preference=est(0.13, 0.09, 0.17), gap=est(0.25, 0.18, 0.32),
                      color_shift=est(0.6, 0.5, 0.7, 40, [0.55, 0.6, 0.65]),
                      probes: dict | None = None) -> Results:
    """The tiny experiment's evaluation by 3 models: preference is shape's over colour.
    `probes` replaces some kinds' results."""
    probes = {
        "sweep": {
            "color": sweep("color", ["red", "green", "blue", "orange"], "red",
                           [None, 0.6, 0.5, 0.3], [0.55, 0.5, 0.55, 0.3],
                           [True, True, True, False], shift=color_shift),
            "iso": sweep("iso", ["0", "1600"], "0", [None, 0.3], [0.9, 0.6], [True, False],
                         stage="sensor", training="only its default 0"),
            "size": sweep("size", ["0.8", "1", "1.2"], "1", [0.08, None, 0.1],
                          [0.85, 0.9, 0.86], [True, True, True])},
        "conflict": {"shape_vs_color": conflict("shape", "color", preference)},
        "protocol": {"background": protocol(gap)},
        **(probes or {})}
    model = {"models_dir": "models", "architecture": "simple_cnn", "width": 32,
             "input_size": 32, "num_classes": 3, "classes": CLASSES, "best_epoch": 4,
             "registered_model": "cuelab-tiny", "train": {"epochs": 5}}
    return Results(
        experiment="tiny", classes=CLASSES, seed=3,
        bootstrap={"resamples": 1000, "confidence": 0.95, "seed": 0},
        models=[{**model, "replicate": r, "seed": 10 + r} for r in range(3)],
        iid={"accuracy": est(0.97, 0.94, 0.99, 300),
             "confusion": [[98, 1, 1], [2, 97, 1], [0, 3, 97]],
             "class_accuracy": {"cube": 0.98, "sphere": 0.97, "cone": 0.97}},
        worst_group=[],
        probes=probes, attribution=None, reliance=reliance_ranking(probes),
        robustness=robustness_table(probes), not_cues=["iso", "size"],
        reliance_definition="A factor's reliance is ...",
        robustness_definition="Robustness is ...",
        files={"predictions": "predictions.parquet", "summary": "index.html", "figures": {}})


def write_evaluation(folder: Path, results: Results, attribution: bool = True) -> Path:
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
        area = est(0.19, 0.18, 0.2, n)
        results = results.model_copy(update={"attribution": AttributionResult(
            images=n, patch=8, split="test",
            saliency={"on_object": est(0.6, 0.55, 0.65, n), "object_area": area,
                      "ratio": est(3.1, 2.9, 3.3, n)},
            occlusion={"on_object": est(0.2, 0.1, 0.3, n), "object_area": area,
                       "ratio": est(1.05, 0.6, 1.5, n)},
            maps="attribution/maps.npz", examples=[])})
    (folder / "results.json").write_text(results.to_json())
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
    c = synthetic_results(preference=est(0.87, 0.83, 0.91)).probes.conflict["shape_vs_color"]
    assert conflict_kind.sentence(c) == (
        "the model follows shape over colour in 87% [83–91%] of shape-vs-colour conflict "
        "images; the cues held balanced between the two classes (texture) moved no clear share "
        "of the decisions; background held at a training level paired with no class")
    # from colour's side, the same verdict: colour loses
    assert "follows shape over colour in 87% [83–91%]" in conflict_kind.sentence(c, "color")


def test_colour_and_shape_preferring_models_get_opposite_verdicts():
    colour = synthetic_results(preference=est(0.13, 0.09, 0.17)).probes.conflict["shape_vs_color"]
    shape = synthetic_results(preference=est(0.87, 0.83, 0.91)).probes.conflict["shape_vs_color"]
    assert "follows colour over shape in 87% [83–91%]" in conflict_kind.sentence(colour, "color")
    assert "follows shape over colour in 87% [83–91%]" in conflict_kind.sentence(shape, "color")


def test_careful_wording_when_the_data_cannot_decide():
    def sentence(**kw):
        return conflict_kind.sentence(conflict("shape", "color", **kw))

    assert sentence(preference=est(0.55, 0.45, 0.65)).startswith(
        "no clear preference between shape and colour")
    assert "wide interval: only 30 images" in sentence(preference=est(0.8, 0.55, 0.95, 30),
                                                        images=30)
    assert sentence(preference=est(0.9, 0.6, 1.0, 12), images=12).startswith(
        "too few shape-vs-colour conflict images to tell: only 12 of 12")
    assert "undefined" in sentence(preference=Estimate.of(np.nan, np.nan, np.nan, 10), images=10,
                                   share_other=1.0)
    assert "10% went to a class neither cue indicates" in sentence(
        preference=est(0.9, 0.85, 0.95), share_other=0.1)
    # a balanced third cue that decided many of the images is said, with its pull
    assert ("but held cues balanced between the two classes moved decisions between them "
            "(texture 60% [50–70%] of the images), so these decisions follow a third cue") in \
        sentence(preference=est(0.6, 0.52, 0.68), pull=est(0.6, 0.5, 0.7))


def test_sweep_background_and_attribution_sentences():
    r = synthetic_results()
    sweeps = r.probes.sweep
    assert sweep_kind.sentence(sweeps["color"]) == (
        "setting colour to the level paired with a class in training pulls 60% [50–70%] of the "
        "decisions to that class, compared with its other training levels (40 base scenes, 3 "
        "trained models; training levels only); between its training levels decisions change "
        "in 20% [16–24%] of the pairs; outside training, accuracy goes from 53% at the training "
        "levels to 30% at orange (training had the levels)")
    assert sweep_kind.sentence(sweeps["iso"]) == (
        "ISO noise indicates no class in training, so the model has no reason to rely on it; "
        "outside training, accuracy goes from 90% at the training levels to 60% at 1600 "
        "(training had only its default 0)")
    none = sweep("color", ["red", "green"], "red", [None, 0.0], [0.9, 0.9], [True, True],
                 shift=est(0.01, -0.03, 0.05))
    assert sweep_kind.sentence(none).startswith(
        "no sign the model follows colour: setting it to a class's level moves 1% [−3% to 5%]")
    assert protocol_kind.sentence(r.probes.protocol["background"]).startswith(
        "accuracy falls from 93% to 68% when the background is drawn for a random class "
        "instead of the object's own (gap 25% [18–32%])")
    none = protocol(est(0.01, -0.03, 0.05))
    assert "barely changes when the background is drawn for a random class instead of the " \
        "object's own (93% against 92%; gap 1% [−3% to 5%]): no sign the model reads the " \
        "background" in protocol_kind.sentence(none)
    unsure = protocol(est(0.2, -0.05, 0.45))
    assert "accuracy goes from 93% to 73% when the background is drawn for a random class " \
        "instead of the object's own, but that gap of 20% [−5% to 45%] could be chance" \
        in protocol_kind.sentence(unsure)
    assert "the map concentrates on the object" in say.attribution_sentence(
        "saliency", AttributionShares(on_object=est(0.6), object_area=est(0.2),
                                      ratio=est(3.0, 2.5, 3.5)))
    assert words.pct(-0.031) == "−3%"
    assert words.interval(Estimate(value=None, low=0.826, high=0.914, n=1)) == "[83–91%]"


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
    assert ids[1:4] == ["ranking", "robustness", "factor-color"]
    for section in ("factor-shape", "factor-background", "factor-size", "factor-iso", "iid",
                    "attribution", "experiment", "reading"):
        assert section in ids
    verdict = text_of(page[page.index('id="verdict"'):page.index('id="ranking"')])
    assert "The model follows colour over shape in 87% [83–91%]" in verdict
    assert "Accuracy falls from 93% to 68%" in verdict  # the background, in the top findings
    assert "Texture was paired with the class in training (ρ = 0.5)" in verdict  # not probed
    assert "ISO noise, size indicate no class in training" in verdict
    assert "mean of 3 trained models" in verdict and "hierarchical bootstrap" in verdict
    robustness = text_of(page[page.index('id="robustness"'):page.index('id="factor-color"')])
    assert "ISO noise = 1600 (noise-free" not in robustness  # 1600 is no special value
    assert "ISO noise = 1600" in robustness and "training had only its default 0" in robustness
    assert robustness.index("ISO noise = 1600") < robustness.index("colour = orange")
    assert "simple_cnn" in page and "cuelab-tiny" in page  # the model, where MLflow has it
    assert "models/mlflow-run.json" in page  # where the run ids are (not on the page)
    assert "rho: 0.8" in page  # the params file as written
    assert "✗ chose" in page and "on object" in page  # attribution examples, both kinds


def test_the_ranking_follows_reliance(tmp_path, params):
    for shift in (est(0.6), est(0.1)):  # colour leads, then colour falls behind
        results = synthetic_results(color_shift=shift, preference=est(0.9))
        page = render_page(tmp_path, params, results)
        expected = [r.factor for r in results.reliance]
        table = page[page.index('<table class="ranking">'):]
        table = table[:table.index("</table>")]
        assert re.findall(r"href='#factor-([a-z_]+)'", table) == expected
        sections = re.findall(r'<section class="factor" id="factor-([a-z_]+)"', page)
        assert sections[:len(expected)] == expected
    assert expected == ["shape", "background", "color"]  # and colour falls behind
    assert page.count('class="dot"') == 3 * 3  # each model's value on each bar


def test_opposite_models_get_opposite_verdicts_on_the_page(tmp_path, params):
    colour = text_of(render_page(tmp_path, params,
                                 synthetic_results(preference=est(0.1, 0.06, 0.14))))
    shape = text_of(render_page(tmp_path, params,
                                synthetic_results(preference=est(0.9, 0.86, 0.94))))
    assert "The model follows colour over shape in 90% [86–94%]" in colour
    assert "The model follows shape over colour in 90% [86–94%]" in shape
    assert "follows shape over colour" not in colour and "follows colour over shape" not in shape


def test_missing_probes_are_said_not_hidden(tmp_path, params):
    results = synthetic_results(probes={"conflict": {}, "protocol": {}})
    assert [r.factor for r in results.reliance] == ["color"]
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
    assert "shape: the model follows colour over shape" in str(first).lower()
    assert "colour: setting colour to the level paired with a class" in str(first).lower()


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


# --- results.json: its model and its errors -----------------------------------------------------

def test_results_round_trip_through_their_model(tmp_path):
    results = synthetic_results()
    assert Results.model_validate_json(results.to_json()) == results  # dump -> load -> equal
    folder = write_evaluation(tmp_path / "evaluation", results)  # with attribution
    text = (folder / "results.json").read_text()
    loaded = load_results(folder)
    assert loaded.to_json() == text and loaded.attribution.saliency.ratio.value == 3.1
    assert load_results(folder / "results.json") == loaded  # the file or its folder
    data = json.loads(text)  # plain JSON, for any other reader
    assert data["schema"] == 3 and list(data["probes"]) == list(PROBE_KINDS)
    assert data["probes"]["sweep"]["color"]["flip_rate"][0] == {
        "value": None, "low": None, "high": None, "n": 40, "per_model": []}
    colour = next(e for e in data["reliance"] if e["factor"] == "color")
    assert colour["set_by"] == {"kind": "sweep", "key": "color", "measure": "cue_shift"}
    assert colour["reliance"] == data["probes"]["sweep"]["color"]["cue_shift"]
    assert colour["reliance"]["per_model"] == [0.55, 0.6, 0.65]
    assert [r["condition"] for r in data["robustness"]][:2] == [
        "ISO noise = 1600", "colour = orange"]


def test_evidence_points_at_its_probe():
    results = synthetic_results()
    for entry in results.reliance:
        for ev in entry.evidence:  # each ref names the result and the field the number is
            assert getattr(results.result(ev.ref), ev.ref.measure) == ev.estimate
    refs = {e.factor: [ev.ref.model_dump() for ev in e.evidence] for e in results.reliance}
    assert refs["background"] == [{"kind": "protocol", "key": "background", "measure": "gap"}]
    assert refs["color"] == [{"kind": "sweep", "key": "color", "measure": "cue_shift"},
                             {"kind": "conflict", "key": "shape_vs_color",
                              "measure": "excess_b"}]
    for row in results.robustness:  # a drop is its probe's own number
        sweep_drops = getattr(results.result(row.ref), "accuracy_drop", None)
        if sweep_drops is not None:
            assert row.drop in sweep_drops


def test_the_verdict_follows_refs_not_display_strings():
    results = synthetic_results(preference=est(0.1, 0.06, 0.14))
    blank = results.model_copy(update={"reliance": [
        e.model_copy(update={"evidence": [ev.model_copy(update={"label": "", "detail": ""})
                                          for ev in e.evidence]})
        for e in results.reliance]})
    said = [(f, text) for f, text, _ in say.findings(results, "shape")]
    assert said == [(f, text) for f, text, _ in say.findings(blank, "shape")]
    # each factor is said by the measure its reliance is: colour by its cue shift, shape by
    # its only probe, the conflict it loses
    assert said[0] == ("color", "setting colour to the level paired with a class in training "
                       "pulls 60% [50–70%] of the decisions to that class, compared with its "
                       "other training levels (40 base scenes, 3 trained models; training "
                       "levels only); between its training levels decisions change in "
                       "20% [16–24%] of the pairs; outside training, accuracy goes from 53% at "
                       "the training levels to 30% at orange (training had the levels)")
    assert dict(said)["shape"].startswith(
        "the model follows colour over shape in 90% [86–94%] of shape-vs-colour conflict images")


OLD_RESULTS = {"schema": 1, "experiment": "tiny", "classes": CLASSES, "seed": 3, "sweeps": {},
               "conflicts": {}, "background": None, "importance": []}


@pytest.mark.parametrize("content, message", [
    (json.dumps(OLD_RESULTS), r"written by an older cuelab \(schema 1\); this one reads "
                              r"schema 3: run `cuelab evaluate` again"),
    ('{"schema": 4}', r"written by a newer cuelab \(schema 4\)"),
    (json.dumps({"name": "tiny", "rows": [1, 2]}),
     r"is not a cuelab results file: experiment: field required; classes: field required; "
     r"seed: field required; and \d+ more"),
    ("[1, 2]", r"is not a cuelab results file: \(top level\): input should be a valid "
               "dictionary"),
    ("{not json", "is not valid JSON"),
])
def test_unreadable_results_name_the_file(tmp_path, content, message):
    path = tmp_path / "evaluation" / "results.json"
    path.parent.mkdir()
    path.write_text(content)
    with pytest.raises(CuelabError, match=re.escape(str(path)) + ":? " + message):
        load_results(path.parent)


def test_a_damaged_results_file_names_the_field(tmp_path):
    data = json.loads(synthetic_results().to_json())
    del data["probes"]["sweep"]["color"]["levels"]
    data["reliance"][0]["set_by"]["kind"] = 7
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    with pytest.raises(CuelabError, match=r"not a cuelab results file: probes.sweep.color.levels: "
                                          r"field required; reliance.0.set_by.kind: input "
                                          "should be a valid string"):
        load_results(path)


def test_missing_or_foreign_results_give_a_clear_error(tmp_path, params):
    with pytest.raises(CuelabError, match=r"results.json is missing\): run `cuelab evaluate` "
                                          "first"):
        report(params, tmp_path / "nowhere", tmp_path / "r.html")
    other = write_params(tmp_path / "other.yaml", tiny_experiment(name="other"))
    write_evaluation(tmp_path / "evaluation", synthetic_results(), attribution=False)
    with pytest.raises(CuelabError, match="the evaluation is of experiment 'tiny'"):
        report(other, tmp_path / "evaluation", tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("content, message", [
    (json.dumps(OLD_RESULTS), "written by an older cuelab (schema 1)"),
    (json.dumps({"rows": [1, 2]}), "is not a cuelab results file: experiment: field required"),
])
def test_cli_refuses_old_or_foreign_results_without_a_traceback(tmp_path, params, content,
                                                                 message):
    results = tmp_path / "evaluation" / "results.json"
    results.parent.mkdir()
    results.write_text(content)
    out = tmp_path / "trace.html"
    r = subprocess.run([BIN / "cuelab", "report", "--params", params, "--evaluation",
                        results.parent, "--out", out], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert f"cuelab report: error: {results}" in r.stderr and message in r.stderr
    assert "Traceback" not in r.stderr and not out.exists()


def test_cli(tmp_path, params, capsys):
    evaluation = write_evaluation(tmp_path / "evaluation", synthetic_results(), attribution=False)
    out = tmp_path / "reports" / "trace.html"
    assert main(["report", "--params", str(params), "--evaluation", str(evaluation),
                 "--out", str(out), "--validation", str(tmp_path / "absent.json")]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "Shape: the model follows colour over shape" in printed
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
    from kfp import dsl, local

    from cuelab.kubeflow.components.report import report as report_component

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
    exp["train"] = {"epochs": 2, "batch_size": 16, "device": "cpu", "replicates": 2}
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
    results = load_results(tmp_path / "evaluation")
    ids = [attrs.get("id") for _, attrs in tags_of(page)]
    for section in ["verdict", "ranking", "iid", "attribution", "experiment"] + [
            f"factor-{f}" for f in ("color", "iso", "size", "shape", "background")]:
        assert section in ids
    ranked = re.findall(r'<section class="factor" id="factor-([a-z_]+)"', page)
    assert ranked[:len(results.reliance)] == [r.factor for r in results.reliance]
    assert len(results.models) == 2 and "replicate 1: seed" in page
    # 12 conflict images: too few decisions for a verdict, and the page says so
    assert "Too few shape-vs-colour conflict images to tell" in text_of(page)
    assert "best_val_accuracy" in page  # train.json
    # where the runs are, not their ids: the page is the same for the same data
    from cuelab.tracking import read_run_link
    link = read_run_link(tmp_path / "evaluation")
    assert link["run_id"] not in page and link["parent_run_id"] not in page
    assert "reports/evaluation/mlflow-run.json" in page and "cuelab-tiny" in page
    assert all(src.startswith("data:image/png;base64,")
               for tag, attrs in tags_of(page) if tag == "img" for src in [attrs["src"]])
    cards = page.count("<div class='card'>")  # up to 4 right and 4 wrong of the 6 images
    assert cards >= 4
    assert len([t for t, _ in tags_of(page) if t == "img"]) == 6 + 4 * cards  # + 6 figures
    assert str(summary).startswith(f"wrote {tmp_path / 'trace_report.html'}")
    # one presentation: the evaluation's figures are the report's pictures, and its summary
    # page is the same page (without the training summary it was not given)
    for name, path in results.files.figures.items():
        png = base64.b64encode((tmp_path / "evaluation" / path).read_bytes()).decode()
        assert (png in page) == (name != "attribution"), name  # that one is for MLflow
    summary_page = (tmp_path / "evaluation" / "index.html").read_text()
    assert ranked == re.findall(r'<section class="factor" id="factor-([a-z_]+)"', summary_page)
    assert "No training summary found" in summary_page and "best_val_accuracy" not in summary_page
