"""The evaluation's statistics against answers computed by hand, on made-up predictions over real
scenes tables (the sampler's rows, a chosen prediction per row)."""

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, bare_experiment
from cuelab.config import experiment_from_dict, load_experiment
from cuelab.errors import CuelabError
from cuelab.evaluate.stats import confusion_matrix, importance_ranking, iid
from cuelab.probes import ProbeRef
from cuelab.probes.conflict import ConflictResult, cue_preference
from cuelab.probes.estimate import Bootstrap, Estimate
from cuelab.probes.protocol import ProtocolResult, background_protocol
from cuelab.probes.sweep import SweepResult, reference_levels, sweep_curve
from cuelab.sampling import sample_scenes

BOOT = Bootstrap(resamples=2000, confidence=0.95, seed=1)


def with_preds(table: pd.DataFrame, preds) -> pd.DataFrame:
    return table.assign(pred=np.asarray(preds, np.int64))


# --- the bootstrap -------------------------------------------------------------------------------

def test_resamples_draw_n_units_each_and_are_seeded_by_the_measure():
    w = BOOT.weights("a", 7)
    assert w.shape == (2000, 7) and (w.sum(1) == 7).all()
    assert np.array_equal(w, BOOT.weights("a", 7))
    assert not np.array_equal(w, BOOT.weights("b", 7))
    # every unit is drawn 1 time per resample on average
    assert w.mean() == pytest.approx(1, abs=0.02)


def test_two_units_interval_is_the_whole_range():
    # the bootstrap means of [0, 1] are 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4:
    # the 5% and 95% quantiles are 0 and 1
    est = Bootstrap(2000, 0.9, 3).mean("x", [0, 1])
    assert (est.value, est.low, est.high, est.n) == (0.5, 0.0, 1.0, 2)


def test_accuracy_interval_matches_the_normal_approximation():
    x = np.r_[np.ones(240), np.zeros(160)]  # p = 0.6, n = 400
    est = BOOT.mean("acc", x)
    half = 1.96 * np.sqrt(0.6 * 0.4 / 400)  # 0.048
    assert est.value == 0.6
    assert est.low == pytest.approx(0.6 - half, abs=0.01)
    assert est.high == pytest.approx(0.6 + half, abs=0.01)


def test_constant_data_has_no_spread_and_no_data_is_undefined():
    assert BOOT.mean("c", np.ones(50)) == Estimate.of(1.0, 1.0, 1.0, 50)
    empty = BOOT.mean("e", [])
    assert empty.value is None and empty.n == 0 and not empty.defined
    assert empty.model_dump() == {"value": None, "low": None, "high": None, "n": 0}
    # raw numbers are kept to 6 decimals, as results.json holds them
    assert Estimate.of(1 / 3, np.nan, 2 / 3, 3) == Estimate(value=0.333333, low=None,
                                                            high=0.666667, n=3)


def test_ratio_resamples_units_with_their_denominators():
    # 3 units: 2/2, 0/2, 1/1 -> 3/5
    est = BOOT.ratio("r", [2, 0, 1], [2, 2, 1])
    assert est.value == pytest.approx(0.6)
    assert 0 <= est.low < 0.6 < est.high <= 1


# --- IID -----------------------------------------------------------------------------------------

def test_iid_accuracy_and_confusion_by_hand():
    table = pd.DataFrame({"split": ["test"] * 5 + ["val"], "label": [0, 0, 1, 2, 2, 0],
                          "pred": [0, 1, 1, 2, 0, 2]})
    out = iid(table, ["a", "b", "c"], BOOT)
    assert out.accuracy.value == pytest.approx(3 / 5)  # the val row is not counted
    assert out.accuracy.n == 5
    assert out.confusion == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert out.class_accuracy == {"a": 0.5, "b": 1.0, "c": 0.5}
    assert confusion_matrix([1, 1], [0, 0], 2).tolist() == [[0, 0], [2, 0]]


# --- sweeps --------------------------------------------------------------------------------------

def test_reference_levels_of_the_default_experiment():
    exp = load_experiment(ROOT / "params.yaml")
    refs = {sw.factor: reference_levels(exp, sw) for sw in exp.sweeps}
    assert refs["color"] == ["red", "green", "blue", "yellow"]       # paired with each class
    assert refs["background"] == ["studio", "sky", "sunset", "checker"]
    assert refs["iso"] == ["0"] * 4                                   # the untouched default
    assert refs["jpeg_quality"] == ["0"] * 4
    assert refs["lens_k1"] == ["0"] * 4
    assert refs["light_intensity"] == ["1"] * 4                       # centre 1.025 of [0.8, 1.25]
    assert refs["camera_elevation"] == ["20"] * 4                     # centre 22.5 of [10, 35]


def iso_experiment():
    return experiment_from_dict(bare_experiment(
        sweeps=[{"factor": "iso", "levels": [0, 800, 3200], "base_scenes": 4},
                {"factor": "color", "levels": ["red", "green", "blue", "orange"],
                 "base_scenes": 6}]))


def test_sweep_accuracy_and_flip_rates_by_hand():
    exp = iso_experiment()
    table = sample_scenes(exp)
    rows = table[table.sweep == "iso"]
    assert rows.label.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [0] * 3  # base by base
    preds = {"sweep-iso-0000": [0, 0, 1], "sweep-iso-0001": [1, 2, 2],
             "sweep-iso-0002": [2, 2, 2], "sweep-iso-0003": [0, 1, 2]}
    table = table.assign(pred=0)
    table.loc[rows.index, "pred"] = np.concatenate(list(preds.values()))
    out = sweep_curve(table, exp, exp.sweeps[0], BOOT)
    assert out.levels == ["0", "800", "3200"]
    assert out.reference == {"cube": "0", "sphere": "0", "cone": "0"}
    assert [a.value for a in out.accuracy] == [1.0, 0.5, 0.25]
    assert out.reference_accuracy.value == 1.0
    flip = [f.value for f in out.flip_rate]
    assert flip == [None, 0.5, 0.75]   # against the base's prediction at 0 (none at 0 itself)
    assert out.max_flip_rate.value == 0.75 and out.max_flip_rate_level == "3200"
    assert out.max_accuracy_drop.value == 0.75
    assert out.max_accuracy_drop_level == "3200"
    # all pairs: flips 2 + 2 + 0 + 3 over 4 * 3 pairs
    assert out.flip_rate_all_pairs.value == pytest.approx(7 / 12, abs=1e-6)
    assert out.flip_rate_all_pairs.n == 4


def test_flip_rates_compare_each_class_against_its_paired_level():
    exp = iso_experiment()  # colour pairs: cube-red, sphere-green, cone-blue
    table = sample_scenes(exp)
    colour_class = {"red": 0, "green": 1, "blue": 2, "orange": 0}
    # a model that reads the colour only
    table = with_preds(table, table.color.map(colour_class))
    out = sweep_curve(table, exp, exp.sweeps[1], BOOT)
    assert out.reference == {"cube": "red", "sphere": "green", "cone": "blue"}
    labels = table[table.sweep == "color"].groupby("base_id").label.first().to_numpy()
    assert labels.tolist() == [0, 1, 2, 0, 1, 2]
    # at red: the right answer for the 2 cubes only; at orange (read as cube) likewise
    assert [a.value for a in out.accuracy] == pytest.approx([1 / 3] * 4, abs=1e-6)
    # every change away from the paired colour flips the decision, except cube -> orange
    flip = [f.value for f in out.flip_rate]
    assert flip[:3] == [1.0, 1.0, 1.0]
    assert flip[3] == pytest.approx(4 / 6, abs=1e-6)
    assert out.reference_accuracy.value == 1.0
    assert out.max_accuracy_drop.value == pytest.approx(2 / 3, abs=1e-6)


def test_a_model_that_ignores_the_factor_never_flips():
    exp = iso_experiment()
    table = sample_scenes(exp)
    out = sweep_curve(with_preds(table, table.label), exp, exp.sweeps[1], BOOT)
    assert all(a.value == 1 for a in out.accuracy)
    assert out.max_flip_rate == Estimate.of(0.0, 0.0, 0.0, 6)
    assert out.flip_rate_all_pairs.value == 0


def test_a_sweep_with_missing_levels_is_refused():
    exp = iso_experiment()
    table = sample_scenes(exp)
    table = with_preds(table, table.label).drop(index=table[table.sweep == "iso"].index[4])
    with pytest.raises(CuelabError, match="sweep over iso: .*every base scene at every level"):
        sweep_curve(table, exp, exp.sweeps[0], BOOT)


# --- cue conflicts -------------------------------------------------------------------------------

def test_cue_preference_and_decision_matrix_by_hand():
    table = pd.DataFrame({"split": "conflict", "conflict": "shape_vs_color",
                          "class_a": [0, 0, 1, 2, 2], "class_b": [1, 1, 2, 0, 0],
                          "pred": [0, 1, 2, 1, 2]})  # follows: a, b, b, neither, a
    out = cue_preference(table, "shape", "color", 3, BOOT)
    assert out.images == 5
    assert out.preference.value == pytest.approx(2 / 4)
    assert out.share_a.value == pytest.approx(2 / 5)
    assert out.share_b.value == pytest.approx(2 / 5)
    assert out.share_other.value == pytest.approx(1 / 5)
    d = np.array(out.decisions)  # [what a said][what b said][decision]
    assert d.sum() == 5 and d[0, 1].tolist() == [1, 1, 0] and d[2, 0].tolist() == [0, 1, 1]
    assert d[1, 2].tolist() == [0, 0, 1]
    assert out.preference_matrix == [[None, 0.5, None], [None, None, 0.0],
                                        [1.0, None, None]]


def test_preference_on_sampled_conflicts_follows_the_model():
    exp = experiment_from_dict(bare_experiment(
        conflicts=[{"factors": ["shape", "color"], "images": 60}]))
    table = sample_scenes(exp)
    colour_reader = with_preds(table, table.color.map({"red": 0, "green": 1, "blue": 2}))
    shape_reader = with_preds(table, table["shape"].map({"cube": 0, "sphere": 1, "cone": 2}))
    assert cue_preference(colour_reader, "shape", "color", 3, BOOT).preference.value == 0
    assert cue_preference(shape_reader, "shape", "color", 3, BOOT).preference.value == 1
    assert cue_preference(shape_reader, "shape", "color", 3, BOOT).share_a == \
        Estimate.of(1.0, 1.0, 1.0, 60)


# --- background protocol -------------------------------------------------------------------------

def protocol_table(correct: dict[str, list[int]]) -> pd.DataFrame:
    rows = []
    for variant, hits in correct.items():
        for b, hit in enumerate(hits):
            rows.append({"split": "protocol", "base_id": f"protocol-{b:04d}",
                         "variant": variant, "label": 1, "pred": 1 if hit else 0})
    return pd.DataFrame(rows)


def test_background_gap_by_hand():
    out = background_protocol(protocol_table({
        "original": [1, 1, 1, 1], "only_fg": [1, 0, 1, 0],
        "mixed_same": [1, 1, 1, 0], "mixed_rand": [0, 1, 0, 0]}), BOOT)
    acc = {v: e.value for v, e in out.accuracy.items()}
    assert acc == {"original": 1.0, "only_fg": 0.5, "mixed_same": 0.75, "mixed_rand": 0.25}
    assert out.gap.value == 0.5 and out.only_fg_drop.value == 0.5
    assert out.base_scenes == 4


def test_background_variants_are_resampled_together():
    # each base scene scores the same with and without its background: a paired resample
    # sees no difference at all, whatever the base scenes drawn
    out = background_protocol(protocol_table({
        "original": [1, 1, 0, 0, 1], "only_fg": [1, 1, 0, 0, 1],
        "mixed_same": [1, 0, 1, 0, 1], "mixed_rand": [1, 0, 1, 0, 1]}), BOOT)
    assert out.gap == Estimate.of(0.0, 0.0, 0.0, 5)
    assert out.only_fg_drop == Estimate.of(0.0, 0.0, 0.0, 5)


def test_background_protocol_without_a_variant_has_no_gap():
    out = background_protocol(protocol_table({"original": [1, 0], "only_fg": [0, 0]}), BOOT)
    assert out.gap is None and out.only_fg_drop.value == 0.5


# --- the ranking ---------------------------------------------------------------------------------

def test_importance_takes_each_factors_largest_share_and_ranks_by_it():
    e = lambda v: Estimate.of(v, v - 0.1, v + 0.1, 10)  # noqa: E731
    sweeps = {f: SweepResult.model_construct(factor=f, max_flip_rate=e(v), max_flip_rate_level=at)
              for f, v, at in (("color", 0.3, "blue"), ("iso", 0.05, "3200"),
                               ("background", 0.2, "sky"))}
    conflicts = {"shape_vs_color": ConflictResult.model_construct(
        factors=("shape", "color"), share_a=e(0.25), share_b=e(0.7))}
    background = ProtocolResult.model_construct(
        gap=e(0.4), only_fg_drop=Estimate.of(np.nan, np.nan, np.nan, 0))
    ranking = importance_ranking({"sweep": sweeps, "conflict": conflicts,
                                  "protocol": {"background": background}})
    assert [(r.rank, r.factor, r.importance.value) for r in ranking] == [
        (1, "color", 0.7), (2, "background", 0.4), (3, "shape", 0.25), (4, "iso", 0.05)]
    color = ranking[0]
    assert color.set_by == ProbeRef(kind="conflict", key="shape_vs_color", measure="share_b")
    assert (color.top.label, color.top.detail) == ("conflict share", "color against shape")
    assert (color.importance.low, color.importance.high) == (pytest.approx(0.6),
                                                             pytest.approx(0.8))
    assert [ev.ref.measure for ev in color.evidence] == ["max_flip_rate", "share_b"]
    # the undefined Only-FG drop is no evidence
    assert [(ev.ref.kind, ev.label) for ev in ranking[1].evidence] == [
        ("sweep", "max flip rate"), ("protocol", "background gap")]


def test_reference_levels_follow_the_training_distribution():
    exp = experiment_from_dict(bare_experiment(
        factors={"size": {"range": [0.5, 2.0], "distribution": "loguniform"},
                 "light_intensity": {"levels": [0.5, 1.0, 3.0]},
                 "material": {"levels": ["glossy", "metal"], "weights": [1, 3]}},
        sweeps=[{"factor": "size", "levels": [0.5, 1.0, 2.0]},
                {"factor": "light_intensity", "levels": [0.3, 1.1, 4.0]},
                {"factor": "material", "levels": ["matte", "metal", "rubber"]},
                {"factor": "occluder", "levels": ["bar", "none"]},
                {"factor": "shape", "levels": ["sphere", "cube"]}]))
    refs = [reference_levels(exp, sw)[0] for sw in exp.sweeps]
    # geometric centre 1; median 1.0 -> nearest 1.1; the likeliest level; the default; first
    assert refs == ["1", "1.1", "metal", "none", "sphere"]


def test_a_sweep_over_the_label_compares_against_its_first_level():
    exp = experiment_from_dict(bare_experiment(
        sweeps=[{"factor": "shape", "levels": ["cube", "sphere", "cone"], "base_scenes": 3}]))
    table = sample_scenes(exp)
    shape_reader = with_preds(table, table["shape"].map({"cube": 0, "sphere": 1, "cone": 2}))
    out = sweep_curve(shape_reader, exp, exp.sweeps[0], BOOT)
    assert [a.value for a in out.accuracy] == [1.0, 1.0, 1.0]
    assert [f.value for f in out.flip_rate][1:] == [1.0, 1.0]
    assert out.flip_rate_all_pairs.value == 1.0
    colour_reader = with_preds(table, table.color.map({"red": 0, "green": 1, "blue": 2}))
    assert sweep_curve(colour_reader, exp, exp.sweeps[0], BOOT).max_flip_rate.value == 0
