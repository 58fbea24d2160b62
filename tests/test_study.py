"""Studies: the study file (checked as params.yaml is, every problem naming its field, nothing
written), the plan `cuelab study check` prints (renders shared across variants), and the study
report (curves against each axis, the crossover of a planted dose-response with its interval)."""

import math
import re
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import bare_experiment, tiny_experiment, write_params
from cuelab.cli import main
from cuelab.study import StudyError, draw_name, load_study, variant_names
from cuelab.study_report import Curve, Point, collect, crossing, crossovers, curves
from test_report import conflict, est, synthetic_results


def write_study(folder: Path, study: dict, base: dict | None = None) -> Path:
    write_params(folder / "params.yaml", base or tiny_experiment())
    path = folder / "studies" / "s.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def study(**overrides) -> dict:
    s = {"name": "s", "base": "../params.yaml",
         "axes": {"factors.color.correlation.rho": [0, 0.5, 1]}, "replicates": 2}
    s.update(overrides)
    return {k: v for k, v in s.items() if v is not None}


def listing(folder: Path) -> list:
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*"))


def test_a_study_makes_one_variant_per_combination(tmp_path):
    s = load_study(write_study(tmp_path, study(axes={"factors.color.correlation.rho": [0, 0.5],
                                                     "train.model": ["simple_cnn", "resnet18"]})))
    variants = s.variants()
    assert [v.name for v in variants] == [
        "tiny-rho-0-model-simple_cnn", "tiny-rho-0-model-resnet18",
        "tiny-rho-0p5-model-simple_cnn", "tiny-rho-0p5-model-resnet18"]
    v = variants[3]
    assert v.values == {"factors.color.correlation.rho": 0.5, "train.model": "resnet18"}
    assert v.experiment.factors["color"].correlation.rho == 0.5
    assert v.experiment.train.model == "resnet18"
    assert v.experiment.train.replicates == 2 and v.experiment.name == v.name
    assert s.numeric_axes() == ["factors.color.correlation.rho"]
    zipped = load_study(write_study(tmp_path, study(
        axes={"train.lr": [0.001, 0.01], "train.epochs": [5, 10]}, combine="zipped",
        set={"factors.background.correlation.rho": 1.0,
             "background_protocol.variants": ["original", "mixed_rand"]})))
    assert [(v.experiment.train.lr, v.experiment.train.epochs) for v in zipped.variants()] \
        == [(0.001, 5), (0.01, 10)]
    assert all(v.experiment.factors["background"].correlation.rho == 1 for v in
               zipped.variants())


def test_draws_run_each_combination_on_its_own_data(tmp_path, capsys):
    """draws: 3 makes each combination three variants, with the base's seed and the two after
    it; draw 0 is the variant a study without draws has (its name, its seed), so adding draws
    keeps what ran."""
    from cuelab.study_run import overrides

    path = write_study(tmp_path, study(draws=3))
    s = load_study(path)
    (tmp_path / "plain").mkdir()
    plain = load_study(write_study(tmp_path / "plain", study()))
    assert len(s.variants()) == 9
    first = [v for v in s.variants() if v.values == {"factors.color.correlation.rho": 0.5}]
    assert [(v.name, v.draw, v.experiment.seed) for v in first] == [
        ("tiny-rho-0p5", 0, 3), ("tiny-rho-0p5-draw-1", 1, 4), ("tiny-rho-0p5-draw-2", 2, 5)]
    assert first[0].experiment == plain.variants()[1].experiment
    assert "++seed=4" in overrides(s, first[1]) and \
        not any("seed" in a for a in overrides(s, first[0]))
    assert first[2].label() == "factors.color.correlation.rho=0.5, draw 2 (seed 5)"
    assert main(["study", "check", str(path)]) == 0
    assert "9 variants (crossed axes: factors.color.correlation.rho 3 values; 3 draws of the " \
        "data each, seeds 3 to 5)" in capsys.readouterr().out


def test_variant_names_are_valid_and_distinct():
    names = variant_names("x" * 60, {"a.b": [0.5, -1.0]}, [{"a.b": 0.5}, {"a.b": -1.0}])
    assert len(set(names)) == 2 and all(len(n) <= 64 for n in names)
    long = ["x" * 58 + "-rho-1", "x" * 58 + "-rho-2"]  # the same first 57 characters
    drawn = [draw_name(n, d) for n in long for d in (1, 12)]
    assert len(set(drawn)) == 4 and all(len(n) <= 64 and n.endswith(("-draw-1", "-draw-12"))
                                        for n in drawn)
    assert draw_name("tiny-rho-0", 0) == "tiny-rho-0"
    names = variant_names("base", {"factors.color.correlation.rho": [1],
                                   "factors.background.correlation.rho": [1]},
                          [{"factors.color.correlation.rho": 1,
                            "factors.background.correlation.rho": 1}])
    assert names == ["base-color_correlation_rho-1-background_correlation_rho-1"]


MALFORMED = {
    "unknown key": (study(replicate=3), "replicate: got 'replicate'; not a known key "
                    "(did you mean 'replicates'?)"),
    "empty axis": (study(axes={"train.lr": []}), "axes.train.lr: got []; a non-empty list"),
    "no axes": (study(axes={}), "axes: got {}; at least one axis"),
    "zipped lengths differ": (
        study(axes={"train.lr": [0.1, 0.01], "train.epochs": [1, 2, 3]}, combine="zipped"),
        "axes: got train.lr: 2 values, train.epochs: 3 values; combine: zipped"),
    "invalid variant": (
        study(axes={"factors.color.correlation.rho": [0.5, 1.5]}),
        "axes: variant factors.color.correlation.rho=1.5: factors.color.correlation.rho: "
        "got 1.5; must be less than or equal to 1"),
    "missing base": (study(base="../nowhere.yaml"), "base: got '../nowhere.yaml'; a params "
                     "file, relative to the study file"),
    "replicates zero": (study(replicates=0), "replicates: got 0; must be greater than or "
                        "equal to 1"),
    "replicates text": (study(replicates="three"), "replicates: got 'three'; must be a valid "
                        "integer"),
    "replicates missing": (study(replicates=None), "replicates: got nothing (the key is "
                           "missing)"),
    "axis sets the name": (study(axes={"name": ["a", "b"]}), "axes.name: got 'name'; set by "
                           "the study"),
    "key through a number": (study(axes={"seed.x": [1]}), "axes.seed.x: got 'seed.x'; a key "
                             "through mappings: seed holds 3"),
    "unknown params key": (study(axes={"train.lrate": [0.1]}), "axes: variant "
                           "train.lrate=0.1: train.lrate: got 'lrate'; not a known key; "
                           "allowed here: model, width"),
    "bad set": (study(set={"factors.background.correlation.rho": 1}),
                "set: background_protocol.variants: got 'only_fg_neutral'"),
    "bad name": (study(name="My Study"), "name: got 'My Study'; a name of 1 to 64"),
    "draws zero": (study(draws=0), "draws: got 0; must be greater than or equal to 1"),
    "draws and a seed axis": (study(draws=3, axes={"seed": [1, 2]}), "axes.seed: got 'seed'; "
                              "set by the study's draws: 3 draws take the base's seed"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_study_names_the_field_and_writes_nothing(tmp_path, monkeypatch, capsys,
                                                              case):
    data, expected = MALFORMED[case]
    base = None
    if case == "bad set":  # a neutral backdrop (white), which rho 1 leaves unseen in training
        base = tiny_experiment(background_protocol={"base_scenes": 5,
                                                    "variants": ["original", "only_fg_neutral"]})
        base["factors"]["background"]["levels"].append("white")
    path = write_study(tmp_path, data, base)
    with pytest.raises(StudyError) as e:
        load_study(path)
    assert expected in str(e.value), str(e.value)
    assert "in the study" in str(e.value)
    monkeypatch.chdir(tmp_path)
    before = listing(tmp_path)
    for action in (["check"], ["report", "--out", "out/study.html"]):
        assert main(["study", *action, str(path)]) == 2
        err = capsys.readouterr().err
        assert expected in err, err
    assert listing(tmp_path) == before


def test_check_prints_the_plan_with_shared_renders(tmp_path, capsys):
    path = write_study(tmp_path, study(axes={"train.lr": [0.001, 0.01, 0.1]}, replicates=3),
                       bare_experiment())
    assert main(["study", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "valid study 's'" in out and "3 variants" in out
    assert "tiny-lr-0p01" in out and "train.lr=0.01" in out
    assert "models to train: 9 (3 variants x 3 replicates)" in out
    shared, alone = map(int, re.search(r"renders: (\d+) distinct across the study "
                                       r"\(each variant alone: (\d+)\)", out).groups())
    assert shared * 3 == alone  # a training-only axis shares every render
    assert "estimated time: about" in out
    # colour's correlation changes the training rows' colours, not all of them
    path = write_study(tmp_path, study(axes={"factors.color.correlation.rho": [0, 1]}),
                       bare_experiment())
    assert main(["study", "check", str(path)]) == 0
    out = capsys.readouterr().out
    shared, alone = map(int, re.search(r"renders: (\d+) distinct across the study "
                                       r"\(each variant alone: (\d+)\)", out).groups())
    assert alone / 2 < shared <= alone


# --- the study report ----------------------------------------------------------------------------

RHOS = [0, 0.25, 0.5, 0.75, 0.9, 1]


def planted(folder: Path, preference, rhos=RHOS, skip=()) -> Path:
    """A colour dose-response study whose variants' results.json say: shape is preferred over
    colour by preference(rho), three models a little apart around it."""
    path = write_study(folder, study(axes={"factors.color.correlation.rho": rhos}, replicates=3))
    runs = folder / "runs" / "s"
    offsets = [[-0.03, 0.0, 0.03], [0.02, -0.025, 0.005], [0.0, 0.03, -0.03]]
    for i, v in enumerate(load_study(path).variants()):
        if i in skip:
            continue
        p = preference(v.values["factors.color.correlation.rho"])
        models = [p + o for o in offsets[i % 3]]
        results = synthetic_results(preference=est(p, p - 0.06, p + 0.06, 200, models),
                                    probes={"conflict": {"shape_vs_color": conflict(
                                        "shape", "color", est(p, p - 0.06, p + 0.06, 200,
                                                              models))}})
        (runs / v.name / "evaluation").mkdir(parents=True)
        (runs / v.name / "evaluation" / "results.json").write_text(results.to_json())
        (runs / v.name / "trace_report.html").write_text("<html></html>")
    return path


def rows(csv_path: Path) -> list[dict]:
    import csv
    with csv_path.open() as f:
        return list(csv.DictReader(f))


def test_crossing_interpolates_between_levels():
    x = np.array([0.0, 0.5, 1.0])
    assert crossing(x, np.array([0.9, 0.7, 0.1]), 0.5) == (pytest.approx(2 / 3), 1)
    assert crossing(x, np.array([0.9, 0.5, 0.1]), 0.5) == (0.5, 1)
    assert crossing(x, np.array([0.9, 0.8, 0.7]), 0.5) == (None, 0)
    assert crossing(x, np.array([0.9, 0.1, 0.9]), 0.5)[1] == 2


def test_a_planted_dose_response_is_monotone_and_its_crossover_excludes_the_ends(tmp_path,
                                                                                  capsys):
    path = planted(tmp_path, lambda rho: 0.9 - 0.8 * rho)  # crosses 0.5 at rho 0.5
    out = tmp_path / "reports" / "study.html"
    assert main(["study", "report", str(path), "--runs", str(tmp_path / "runs" / "s"),
                 "--out", str(out)]) == 0
    assert "6 of 6 variants finished" in capsys.readouterr().out
    measures = [r for r in rows(out.with_name("study-measures.csv"))
                if r["measure"] == "preference for shape over color"]
    curve = [float(r["value"]) for r in sorted(
        measures, key=lambda r: float(r["factors.color.correlation.rho"]))]
    assert len(curve) == 6 and all(a > b for a, b in zip(curve, curve[1:]))  # monotone
    (c,) = [r for r in rows(out.with_name("study-crossovers.csv"))
            if r["crossover"] == "preference for shape over color = 0.5"]
    assert float(c["at"]) == pytest.approx(0.5)
    assert 0 < float(c["low"]) <= 0.5 <= float(c["high"]) < 1  # excludes the ends
    # the levels whose intervals (+-0.06) hold 0.5, and the neighbours clearly on either side
    assert (float(c["low"]), float(c["high"])) == (0.25, 0.75)
    assert (c["between_low"], c["between_high"], c["interval_reaches"]) == ("0.25", "0.75", "")
    assert c["direction"] == "decreasing" and c["crossings"] == "1"
    plotted = rows(out.with_name("study-plots") / "preference-for-shape-over-color.csv")
    assert [float(r["value"]) for r in plotted] == curve  # dvc plots data, one curve a file
    assert float(plotted[2]["factors.color.correlation.rho"]) == 0.5
    page = out.read_text()
    assert "<svg" in page and "preference for shape over color" in page
    assert not re.search(r"""(src|href)=['"]https?:""", page)  # self-contained
    assert "href='../runs/s/tiny-rho-0p5/trace_report.html'" in page


def test_the_crossover_interval_covers_the_probe_scenes_not_only_the_replicates(tmp_path):
    """Three models that agree closely, on probe scenes that leave each level +-0.15 uncertain:
    the crossing's interval spans every level whose interval holds 0.5 (a bootstrap over the
    three models alone gave about +-0.02), and one that reaches the end of the range says a
    crossing beyond it cannot be ruled out."""
    tenths = [i / 10 for i in range(11)]
    path = write_study(tmp_path, study(axes={"factors.color.correlation.rho": tenths},
                                       replicates=3))
    runs = tmp_path / "runs" / "s"
    for v in load_study(path).variants():
        p = 0.9 - 0.8 * v.values["factors.color.correlation.rho"]  # crosses 0.5 at rho 0.5
        e = est(p, p - 0.15, p + 0.15, 40, [p - 0.005, p, p + 0.005])
        results = synthetic_results(preference=e, probes={"conflict": {
            "shape_vs_color": conflict("shape", "color", e)}})
        (runs / v.name / "evaluation").mkdir(parents=True)
        (runs / v.name / "evaluation" / "results.json").write_text(results.to_json())
    s = load_study(path)
    found = crossovers(s, curves(s, collect(s, runs)[0]))
    (c,) = [c for c in found if c.what == "preference for shape over color = 0.5"]
    assert c.x == pytest.approx(0.5)
    # 0.9 - 0.8 rho +- 0.15 holds 0.5 from rho 0.4 to 0.6; 0.3 and 0.7 are clearly off it
    assert (c.low, c.high) == (0.3, 0.7) and c.between == (0.4, 0.6) and c.reaches == ""
    # a shallow curve: crossing at rho 0.89, the band still holds 0.5 at rho 1
    shallow = [Point(x, f"v{x}", est(0.9 - 0.45 * x, 0.84 - 0.45 * x, 0.96 - 0.45 * x, 40))
               for x in RHOS]
    (c,) = crossovers(s, [Curve("rho", "", "preference for a over b", shallow)])
    assert c.x == pytest.approx(0.4 / 0.45) and (c.low, c.high) == (0.75, 1)
    assert c.reaches == "end"
    assert "it may cross beyond" in c.text()
    # no crossing at the estimate, but the band reaches 0.5 near the end: said, not hidden
    flat = [Point(x, f"v{x}", est(0.9 - 0.35 * x, 0.84 - 0.35 * x, 0.96 - 0.35 * x, 40))
            for x in RHOS]
    (c,) = crossovers(s, [Curve("rho", "", "preference for a over b", flat)])
    assert c.x is None and (c.low, c.high) == (0.9, 1) and c.reaches == "end"
    assert "a crossing there cannot be ruled out" in c.text()


def test_a_crossing_between_distant_levels_is_not_placed_by_a_straight_line():
    """A steep dose-response: 0.9 until rho 0.7, then falling to 0 by rho 1, crossing 0.5 at
    0.831. On the levels 0, 0.5 and 1, a straight line between 0.5 and 1 crosses at 0.73 and
    a band joined by straight lines held 0.5 only from 0.70 to 0.75: a confident interval
    that misses the crossing. The interval spans the two levels instead, and levels added
    around the crossing narrow it."""
    def steep(x):
        return 0.9 / (1 + math.exp((x - 0.84) / 0.04))

    truth = 0.84 + 0.04 * math.log(0.8)
    assert steep(truth) == pytest.approx(0.5)
    for xs, interval in (([0, 0.5, 1], (0.5, 1)),
                         ([0, 0.5, 0.7, 0.8, 0.85, 0.9, 1], (0.8, 0.85))):
        points = [Point(x, f"v{x}", est(steep(x), steep(x) - 0.05, steep(x) + 0.05, 40))
                  for x in xs]
        (c,) = crossovers(None, [Curve("rho", "", "preference for a over b", points)])
        assert (c.low, c.high) == interval and c.low < truth < c.high and c.reaches == ""
    assert c.x == pytest.approx(truth, abs=0.01)


def test_two_reliances_cross_where_the_interval_of_their_difference_allows_0():
    """The difference's interval runs from the lowest to the highest difference the two
    intervals allow: colour 0.2x and shape 0.6 - 0.2x, each +-0.05, cross at x = 1.5, where
    colour - shape (0.4x - 0.6, +-0.1) holds 0; at 1 and 2 it is clearly off it."""
    xs = [0, 0.5, 1, 1.5, 2, 2.5, 3]
    colour = [Point(x, f"v{x}", est(0.2 * x, 0.2 * x - 0.05, 0.2 * x + 0.05, 40)) for x in xs]
    shape = [Point(x, f"v{x}", est(0.6 - 0.2 * x, 0.55 - 0.2 * x, 0.65 - 0.2 * x, 40))
             for x in xs]
    (c,) = crossovers(None, [Curve("x", "", "reliance on color", colour),
                             Curve("x", "", "reliance on shape", shape)])
    assert c.what == "reliance on color = reliance on shape" and c.direction == "increasing"
    assert c.x == pytest.approx(1.5)
    assert (c.low, c.high) == (1, 2)
    # two cues the networks hardly use, swapping places by noise: no crossing is claimed
    texture = [Point(x, f"v{x}", est(v, 0, v + 0.04, 40)) for x, v in zip(xs, [0.01, 0.02] * 4)]
    iso = [Point(x, f"v{x}", est(v, 0, v + 0.04, 40)) for x, v in zip(xs, [0.02, 0.01] * 4)]
    (c,) = crossovers(None, [Curve("x", "", "reliance on iso", iso),
                             Curve("x", "", "reliance on texture", texture)])
    assert c.x is not None and c.reaches == "start and end"
    assert c.text().startswith("cannot tell where, or whether, it crosses")


def test_no_crossing_is_said_and_unfinished_variants_are_listed(tmp_path, capsys):
    path = planted(tmp_path, lambda rho: 0.9 - 0.1 * rho, skip=[2])  # shape preferred always
    out = tmp_path / "study.html"
    assert main(["study", "report", str(path), "--runs", str(tmp_path / "runs" / "s"),
                 "--out", str(out)]) == 0
    page = out.read_text()
    assert "no crossing in the range 0 to 1" in page
    assert "not finished" in page and "tiny-rho-0p5" in page
    (c,) = [r for r in rows(tmp_path / "study-crossovers.csv")
            if r["crossover"] == "preference for shape over color = 0.5"]
    assert c["at"] == "" and c["low"] == ""


def test_a_report_without_finished_variants_writes_nothing(tmp_path, capsys):
    path = write_study(tmp_path, study())
    out = tmp_path / "out" / "study.html"
    before = listing(tmp_path)
    assert main(["study", "report", str(path), "--runs", str(tmp_path / "runs"),
                 "--out", str(out)]) == 2
    assert "no finished variant of study 's'" in capsys.readouterr().err
    assert listing(tmp_path) == before


# --- running a study as DVC experiments ----------------------------------------------------------

STAGE = """\
import sys
sys.path[:0] = [{src!r}, {tests!r}]
import yaml
from cuelab.config import load_experiment
from test_report import conflict, est, synthetic_results
exp = load_experiment("params.yaml")
p = 0.9 - 0.8 * exp.factors["color"].correlation.rho
models = [p - 0.03, p, p + 0.03][:exp.train.replicates]
e = est(p, p - 0.06, p + 0.06, 200, models)
r = synthetic_results(preference=e, probes={{"conflict": {{"shape_vs_color": conflict(
    "shape", "color", e)}}}})
import pathlib
pathlib.Path("reports/evaluation").mkdir(parents=True, exist_ok=True)
pathlib.Path("reports/evaluation/results.json").write_text(r.to_json())
pathlib.Path("reports/trace_report.html").write_text("<html>" + exp.name + "</html>")
"""


def study_project(tmp_path: Path, stage: str, rhos: list, draws: int = 1) -> tuple[Path, Path]:
    """A real DVC project whose one stage is `stage` (STAGE's code: a results.json from
    params.yaml), committed, and a study of colour's rho over `rhos`: (root, study file)."""
    import sys

    from test_dvc import sh

    root = tmp_path / "project"
    root.mkdir()
    write_params(root / "params.yaml", bare_experiment(
        conflicts=[{"factors": ["shape", "color"], "images": 12}]))
    here = Path(__file__).parent
    (root / "stage.py").write_text(stage.format(src=str(here.parent / "src"), tests=str(here)))
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"evaluate": {
        "cmd": f"{sys.executable} stage.py", "deps": ["stage.py"], "params": [
            "name", "factors", "train"], "outs": ["reports/evaluation",
                                                  "reports/trace_report.html"]}}}))
    (root / ".gitignore").write_text("/reports/\n/runs/\n")
    (root / "studies").mkdir()
    path = root / "studies" / "dose.yaml"
    path.write_text(yaml.safe_dump({"name": "dose", "base": "../params.yaml", "axes": {
        "factors.color.correlation.rho": rhos}, "replicates": 3, "draws": draws,
        "set": {"train.mitigation": "none"}}))
    sh("git", "init", "-q", cwd=root)
    sh("dvc", "init", "-q", cwd=root)
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "base", cwd=root)
    return root, path


STUDY_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_COMMITTER_NAME": "t",  # DVC commits each experiment
             "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_EMAIL": "t@t",
             "CUELAB_RENDER_CACHE": "off"}  # this pipeline renders nothing


@pytest.mark.slow
def test_run_queues_one_dvc_experiment_per_variant_and_gathers_their_results(tmp_path, capsys,
                                                                             monkeypatch):
    """A real DVC project whose one stage writes a results.json from params.yaml (a planted
    dose-response): `study run` queues and runs the variants, two draws of each, `study report`
    reads them and pools the draws."""
    from test_dvc import sh

    root, path = study_project(tmp_path, STAGE, [0, 1], draws=2)
    for key, value in STUDY_ENV.items():
        monkeypatch.setenv(key, value)
    assert main(["study", "run", str(path), "-j", "2"]) == 0
    out = capsys.readouterr().out
    assert "4 variants run as DVC experiments" in out and "gathered 4" in out, out
    runs = root / "runs" / "dose"
    names = ("tiny-rho-0", "tiny-rho-0-draw-1", "tiny-rho-1", "tiny-rho-1-draw-1")
    seeds = []
    for name in names:
        folder = runs / name
        assert (folder / "evaluation" / "results.json").is_file()
        assert (folder / "trace_report.html").read_text() == f"<html>{name}</html>"
        ran = yaml.safe_load((folder / "params.yaml").read_text())
        assert ran["train"]["replicates"] == 3
        seeds.append(ran["seed"])
    assert seeds[1] == seeds[0] + 1 and seeds[3] == seeds[2] + 1 and seeds[0] == seeds[2]
    shown = sh("dvc", "exp", "show", "--no-pager", "--csv", cwd=root)
    assert all(name in shown for name in names)
    # again: nothing queued, the same experiments gathered
    assert main(["study", "run", str(path)]) == 0
    assert "4 already run for this commit" in capsys.readouterr().out
    out = root / "reports" / "study.html"
    assert main(["study", "report", str(path), "--runs", str(runs), "--out", str(out)]) == 0
    (c,) = [r for r in rows(out.with_name("study-crossovers.csv"))
            if r["crossover"] == "preference for shape over color = 0.5"]
    assert float(c["at"]) == pytest.approx(0.5)
    # between the two levels, neither of which holds 0.5: it crosses inside the range
    assert (c["low"], c["high"], c["interval_reaches"]) == ("0", "1", "")
    assert {r["draws"] for r in rows(out.with_name("study-measures.csv"))} == {"2"}


@pytest.mark.slow
def test_a_variant_that_fails_beside_another_worker_runs_again_alone(tmp_path, capsys,
                                                                       monkeypatch):
    """Two queue workers share DVC's run cache, and one can trip on the other's write of it (an
    ENOENT seen in make test). A variant that fails with -j 2 is queued again and run alone:
    here rho 1's stage fails the first time it runs, and the study still gathers both."""
    marker = tmp_path / "failed-once"
    flaky = STAGE.replace("exp = load_experiment(\"params.yaml\")\n", (
        "exp = load_experiment(\"params.yaml\")\n"
        "import os\n"
        f"if exp.factors[\"color\"].correlation.rho == 1 and not os.path.exists({str(marker)!r}):\n"
        f"    open({str(marker)!r}, \"w\").close()\n"
        "    sys.exit(\"planted: fails the first time\")\n"))
    assert flaky != STAGE
    root, path = study_project(tmp_path, flaky, [0, 1])
    for key, value in STUDY_ENV.items():
        monkeypatch.setenv(key, value)
    assert main(["study", "run", str(path), "-j", "2"]) == 0
    out = capsys.readouterr().out
    assert marker.exists()  # it did fail once
    assert "1 failed beside another worker and ran again alone: tiny-rho-1" in out, out
    assert "gathered 2 variants" in out and "failed (no experiment" not in out, out
    assert (root / "runs" / "dose" / "tiny-rho-1" / "evaluation" / "results.json").is_file()


@pytest.mark.slow
def test_ctrl_c_stops_the_study_s_queue_and_running_it_again_picks_up(tmp_path):
    """Ctrl-C (SIGINT to the foreground process group, as a terminal sends it) while the second
    variant runs: exit 130 without a traceback, the running variant killed and nothing left in
    the queue (DVC's daemon workers would go on alone), the finished one named; running the
    study again runs only the other."""
    import os
    import signal
    import subprocess

    from conftest import BIN, as_a_terminal_starts_it
    from cuelab.study_run import _end_queue
    from test_dvc import sh

    started, fast = tmp_path / "started", tmp_path / "fast"
    slow = STAGE + (  # rho = 1 sleeps, until `fast` exists
        "import os, time\n"
        f"if exp.factors['color'].correlation.rho == 1 and not os.path.exists({str(fast)!r}):\n"
        f"    pathlib.Path({str(started)!r}).write_text(str(os.getpid()))\n"
        "    time.sleep(600)\n")  # no braces: STAGE's placeholders are the only ones
    root, path = study_project(tmp_path, slow, [0, 1])
    env = {**os.environ, **STUDY_ENV, "PATH": f"{BIN}:{os.environ['PATH']}"}
    cmd = as_a_terminal_starts_it([BIN / "cuelab", "study", "run", str(path)])
    run = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while not started.exists():
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.5)
    os.killpg(run.pid, signal.SIGINT)
    try:
        out, err = run.communicate(timeout=180)
    except subprocess.TimeoutExpired:  # say where it hangs (cuelab's stack), leave nothing
        os.kill(run.pid, signal.SIGUSR1)
        time.sleep(2)
        ps = sh("ps", "-eo", "pid,pgid,stat,wchan:24,args", cwd=root)
        os.killpg(run.pid, signal.SIGKILL)
        _end_queue(root)
        out, err = run.communicate()
        pytest.fail(f"`cuelab study run` still runs 180 s after Ctrl-C:\n{err[-6000:]}\n{ps}")
    assert run.returncode == 130 and "Traceback" not in err, err[-3000:]
    assert "interrupted: the study's queue is stopped" in err and \
        "1 of 2 variants finished (tiny-rho-0)" in err, err
    pid, deadline = int(started.read_text()), time.monotonic() + 60
    while _alive(pid):  # killed (the queue stops it a moment after it is told)
        assert time.monotonic() < deadline, f"the variant's stage ({pid}) still runs"
        time.sleep(0.5)
    status = sh("dvc", "queue", "status", cwd=root)
    assert "Running" not in status and "Queued" not in status, status
    fast.touch()
    again = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 variants run as DVC experiments, 1 already run for this commit" in again.stdout \
        and "gathered 2" in again.stdout, again.stdout
    # the hang guard's reading of the queue: both ended; one it does not list might still run
    from cuelab.study_run import _pending

    assert not _pending(root, ["tiny-rho-0", "tiny-rho-1"])
    assert _pending(root, ["tiny-rho-0", "tiny-rho-0p5"])


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def test_run_needs_the_projects_params_as_base_and_writes_nothing(tmp_path, capsys):
    path = write_study(tmp_path, study())  # no dvc.yaml, no .dvc/ beside the base
    before = listing(tmp_path)
    assert main(["study", "run", str(path)]) == 2
    assert "the base must be the params.yaml beside dvc.yaml and .dvc/" in \
        capsys.readouterr().err
    assert listing(tmp_path) == before


def test_touching_the_threshold_is_not_crossing_it():
    x = np.array([0, 0.5, 1.0])
    assert crossing(x, np.array([0.3, 0.2, 0.0]), 0.0) == (None, 0)  # meets it at the end
    assert crossing(x, np.array([0.9, 0.5, 0.1]), 0.5) == (0.5, 1)   # passes through a level
    at, n = crossing(x, np.array([0.9, 0.7, 0.1]), 0.5)
    assert n == 1 and abs(at - (0.5 + 0.5 * 0.2 / 0.6)) < 1e-12


def planted_mitigations(folder: Path, gap: dict, colour: dict, width: float = 0.05,
                        models: float = 0.02) -> Path:
    """A mitigation study whose variants' results.json plant the background gap and the
    reliance on colour per mitigation: intervals +-width, three models +-models apart."""
    path = write_study(folder, study(axes={"train.mitigation": list(gap)}, replicates=3))
    for v in load_study(path).variants():
        g, c = gap[v.values["train.mitigation"]], colour[v.values["train.mitigation"]]
        results = synthetic_results(
            gap=est(g, g - width, g + width, 100, [g - models, g, g + models]),
            color_shift=est(c, c - width, c + width, 40, [c - models, c, c + models]))
        (folder / "runs" / v.name / "evaluation").mkdir(parents=True)
        (folder / "runs" / v.name / "evaluation" / "results.json").write_text(
            results.to_json())
    return path


def test_mitigations_side_by_side_say_which_cue_fell_and_which_rose(tmp_path, capsys):
    """A planted mitigation study: both mitigations remove the background gap and one of them
    makes the network lean on colour instead; IID accuracy stays where it was."""
    planted_gap = {"none": 0.3, "random_background": 0.02, "adversarial_background": 0.0}
    planted_colour = {"none": 0.4, "random_background": 0.6, "adversarial_background": 0.41}
    path = planted_mitigations(tmp_path, planted_gap, planted_colour)
    out = tmp_path / "study.html"
    assert main(["study", "report", str(path), "--runs", str(tmp_path / "runs"),
                 "--out", str(out)]) == 0
    verdict = {(r["level"], r["measure"]): r["verdict"]
               for r in rows(tmp_path / "study-changes.csv")}
    for level in ("random_background", "adversarial_background"):
        assert verdict[level, "background gap"] == "fell"
        assert verdict[level, "IID accuracy"] == "no clear change"
    assert verdict["random_background", "reliance on color"] == "rose"
    assert verdict["adversarial_background", "reliance on color"] == "no clear change"
    table = rows(tmp_path / "study-backgrounds.csv")
    mixed_rand = {r["train.mitigation"]: float(r["accuracy"]) for r in table
                  if r["test background"] == "mixed_rand (background protocol)"}
    assert mixed_rand == pytest.approx({m: 0.93 - g for m, g in planted_gap.items()})
    page = out.read_text()
    assert "Levels of <code>train.mitigation</code> side by side" in page
    assert "<b>rose</b>" in page and "<b>fell</b>" in page


def test_a_change_within_the_probes_noise_is_not_called_a_change(tmp_path, capsys):
    """Three models that agree closely (+-0.005) say little of the probe scenes they share:
    colour's reliance 0.40 -> 0.46 with each level's interval +-0.08 is no clear change (a
    bootstrap over the models alone called it a rise), while the gap 0.30 -> 0.02 fell."""
    path = planted_mitigations(tmp_path, {"none": 0.3, "random_background": 0.02},
                               {"none": 0.4, "random_background": 0.46}, width=0.08,
                               models=0.005)
    assert main(["study", "report", str(path), "--runs", str(tmp_path / "runs"),
                 "--out", str(tmp_path / "study.html")]) == 0
    changed = {r["measure"]: r for r in rows(tmp_path / "study-changes.csv")}
    colour, gap = changed["reliance on color"], changed["background gap"]
    assert colour["verdict"] == "no clear change"
    assert (float(colour["low"]), float(colour["high"])) == (pytest.approx(0.06 - 0.16),
                                                             pytest.approx(0.06 + 0.16))
    assert gap["verdict"] == "fell" and float(gap["high"]) == pytest.approx(-0.28 + 0.16)


def test_draws_are_pooled_so_a_difference_between_data_draws_is_no_change(tmp_path, capsys,
                                                                           monkeypatch):
    """Each draw's models agree and its intervals are narrow, but the draws of the data do not:
    colour's reliance 0.30 / 0.40 / 0.50 without a mitigation, 0.45 / 0.55 / 0.65 with one. One
    draw alone would call that a rise; the draws pooled (Student's t over 3 draws) do not. The
    gap, the same in every draw, keeps an interval from the draws' own (their errors combined)
    and still fell."""
    path = write_study(tmp_path, study(axes={"train.mitigation": ["none", "random_background"]},
                                       replicates=3, draws=3))
    colour = {"none": [0.30, 0.40, 0.50], "random_background": [0.45, 0.55, 0.65]}
    gap = {"none": 0.3, "random_background": 0.02}
    for v in load_study(path).variants():
        m = v.values["train.mitigation"]
        c, g = colour[m][v.draw], gap[m]
        results = synthetic_results(
            gap=est(g, g - 0.05, g + 0.05, 100, [g - 0.01, g, g + 0.01]),
            color_shift=est(c, c - 0.01, c + 0.01, 40, [c - 0.005, c, c + 0.005]))
        (tmp_path / "runs" / v.name / "evaluation").mkdir(parents=True)
        (tmp_path / "runs" / v.name / "evaluation" / "results.json").write_text(
            results.to_json())
    out = tmp_path / "study.html"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert main(["study", "report", str(path), "--runs", str(tmp_path / "runs"),
                 "--out", str(out), "--mlflow"]) == 0
    assert "6 of 6 variants finished" in capsys.readouterr().out
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    children = [r for r in client.search_runs([client.get_experiment_by_name(
        "study s").experiment_id]) if r.data.tags.get("cuelab.kind") == "variant"]
    assert sorted((r.data.params["train.mitigation"], r.data.params["seed"],
                   r.data.params["draw"]) for r in children) == [
        (m, str(3 + d), str(d)) for m in ("none", "random_background") for d in range(3)]
    changed = {r["measure"]: r for r in rows(tmp_path / "study-changes.csv")}
    assert changed["reliance on color"]["verdict"] == "no clear change"
    assert changed["background gap"]["verdict"] == "fell"
    pooled = {(r["train.mitigation"], r["measure"]): r for r in rows(
        tmp_path / "study-measures.csv")}
    none = pooled["none", "reliance on color"]
    half = 4.302653 * 0.1 / 3 ** 0.5  # t(0.975, 2 df) x sd / sqrt(3)
    assert (float(none["value"]), float(none["low"]), float(none["high"]), none["draws"]) == (
        pytest.approx(0.4), pytest.approx(0.4 - half, abs=1e-5),
        pytest.approx(0.4 + half, abs=1e-5), "3")
    assert len(none["per_model"].split(";")) == 9
    g = pooled["none", "background gap"]  # the draws agree: their own errors, combined
    assert float(g["high"]) - 0.3 == pytest.approx(0.05 * 3 ** 0.5 / 3, abs=1e-5)
    page = out.read_text()
    assert "3 draws of the data (seeds 3 on)" in page and "the training data draw." in page
    assert "<td>tiny-mitigation-random_background-draw-2</td>" in page  # each draw listed


def test_the_study_in_mlflow_is_a_parent_run_with_a_child_per_variant(tmp_path, capsys,
                                                                       monkeypatch):
    """Each child carries the value it varies and its measures on the same run (what MLflow's
    parallel coordinates plot); logging again updates the same runs."""
    from mlflow import MlflowClient

    path = planted(tmp_path, lambda rho: 0.9 - 0.8 * rho)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    args = ["study", "report", str(path), "--runs", str(tmp_path / "runs" / "s"), "--out",
            str(tmp_path / "study.html"), "--mlflow"]
    for _ in range(2):
        assert main(args) == 0
    assert "parent run" in capsys.readouterr().out
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("study s")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("cuelab.kind") == "study"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 1 + len(RHOS) == 1 + len(children)
    by_rho = {float(r.data.params["factors.color.correlation.rho"]):
              r.data.metrics["preference for shape over color"] for r in children}
    assert by_rho == pytest.approx({rho: 0.9 - 0.8 * rho for rho in RHOS})
    crossing = parent.data.metrics[
        "factors.color.correlation.rho where preference for shape over color equals 0.5"]
    assert crossing == pytest.approx(0.5)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"study.html", "study-measures.csv", "study-crossovers.csv"} <= artifacts
