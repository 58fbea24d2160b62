"""The evaluation's statistics against answers computed by hand, on made-up predictions over real
scenes tables (the sampler's rows, a chosen prediction per row and model)."""

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, bare_experiment
from cuelab.config import experiment_from_dict, load_experiment
from cuelab.errors import CuelabError
from cuelab.evaluate.stats import (confusion_matrix, iid, reliance_ranking, robustness_table,
                                   unreliable, worst_group)
from cuelab.probes import ProbeRef
from cuelab.probes.conflict import ConflictResult, cue_preference
from cuelab.probes.estimate import Bootstrap, Estimate
from cuelab.probes.protocol import ProtocolResult, background_protocol
from cuelab.probes.sweep import SweepResult, reference_levels, sweep_curve
from cuelab.sampling import sample_scenes

BOOT = Bootstrap(resamples=2000, confidence=0.95, seed=1)


def with_preds(table: pd.DataFrame, *preds) -> pd.DataFrame:
    """The table once per model, each with its predictions."""
    return pd.concat([table.assign(pred=np.asarray(p, np.int64), replicate=r)
                      for r, p in enumerate(preds)], ignore_index=True)


# --- the bootstrap -------------------------------------------------------------------------------

def test_resamples_draw_n_units_each_and_are_seeded_by_the_measure():
    w = BOOT.weights("a", 7)
    assert w.shape == (2000, 7) and (w.sum(1) == 7).all()
    assert np.array_equal(w, BOOT.weights("a", 7))
    assert not np.array_equal(w, BOOT.weights("b", 7))
    assert not np.array_equal(BOOT.model_weights("a", 7), w)  # models: a stream of their own
    # every unit is drawn 1 time per resample on average
    assert w.mean() == pytest.approx(1, abs=0.02)


def test_two_units_interval_is_the_whole_range():
    # the bootstrap means of [0, 1] are 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4:
    # the 5% and 95% quantiles are 0 and 1
    est = Bootstrap(2000, 0.9, 3).mean("x", [0, 1])
    assert (est.value, est.low, est.high, est.n) == (0.5, 0.0, 1.0, 2)
    assert est.per_model == [0.5]


def test_accuracy_interval_matches_the_normal_approximation():
    x = np.r_[np.ones(240), np.zeros(160)]  # p = 0.6, n = 400
    est = BOOT.mean("acc", x)
    half = 1.96 * np.sqrt(0.6 * 0.4 / 400)  # 0.048
    assert est.value == 0.6
    assert est.low == pytest.approx(0.6 - half, abs=0.01)
    assert est.high == pytest.approx(0.6 + half, abs=0.01)


def test_constant_data_has_no_spread_and_no_data_is_undefined():
    assert BOOT.mean("c", np.ones(50)) == Estimate.of(1.0, 1.0, 1.0, 50, [1.0])
    empty = BOOT.mean("e", [])
    assert empty.value is None and empty.n == 0 and not empty.defined
    assert empty.model_dump() == {"value": None, "low": None, "high": None, "n": 0,
                                  "per_model": []}
    # raw numbers are kept to 6 decimals, as results.json holds them
    assert Estimate.of(1 / 3, np.nan, 2 / 3, 3) == Estimate(value=0.333333, low=None,
                                                            high=0.666667, n=3)


def test_ratio_resamples_units_with_their_denominators():
    # 3 units: 2/2, 0/2, 1/1 -> 3/5
    est = BOOT.ratio("r", [2, 0, 1], [2, 2, 1])
    assert est.value == pytest.approx(0.6)
    assert 0 <= est.low < 0.6 < est.high <= 1


def test_the_hierarchical_interval_covers_the_models_and_keeps_their_values():
    rng = np.random.default_rng(0)
    # three models whose accuracies differ far more than 400 images can tell apart
    x = np.stack([rng.random(400) < p for p in (0.55, 0.7, 0.85)]).astype(float)
    est = BOOT.mean("m", x)
    each = x.mean(1)
    assert est.per_model == pytest.approx(each.tolist(), abs=1e-6)
    assert est.value == pytest.approx(each.mean(), abs=1e-6)
    assert est.low <= each.min() and est.high >= each.max()
    one = BOOT.mean("m", x[1])  # one model: only the images' variation
    assert est.high - est.low > 2.5 * (one.high - one.low)


def test_models_that_agree_add_nothing_to_the_interval():
    x = (np.arange(300) % 3 == 0).astype(float)
    same = BOOT.mean("s", np.stack([x, x, x]))
    assert same.per_model == [pytest.approx(1 / 3, abs=1e-6)] * 3
    assert (same.low, same.high) == (BOOT.mean("s", x).low, BOOT.mean("s", x).high)


# --- IID and worst group -----------------------------------------------------------------------

def test_iid_accuracy_and_confusion_by_hand():
    table = pd.DataFrame({"image_id": list("abcdef"), "split": ["test"] * 5 + ["val"],
                          "label": [0, 0, 1, 2, 2, 0]})
    out = iid(with_preds(table, [0, 1, 1, 2, 0, 2], [0, 0, 1, 2, 2, 2]), ["a", "b", "c"], BOOT)
    assert out.accuracy.per_model == [pytest.approx(3 / 5), 1.0]  # the val row is not counted
    assert out.accuracy.value == pytest.approx(4 / 5)
    assert out.accuracy.n == 5
    assert out.confusion == [[3, 1, 0], [0, 2, 0], [1, 0, 3]]  # both models' decisions
    assert out.class_accuracy == {"a": 0.75, "b": 1.0, "c": 0.75}
    assert confusion_matrix([1, 1], [0, 0], 2).tolist() == [[0, 0], [2, 0]]


def test_worst_group_of_a_colour_reader_on_the_balanced_test_split():
    exp = experiment_from_dict(bare_experiment(splits={"train": 6, "val": 3, "test": 3,
                                                       "test_balanced": 240}))
    table = sample_scenes(exp)
    rows = table[table.split == "test_balanced"]
    colour_reader = rows.color.map({"red": 0, "green": 1, "blue": 2})
    out = {w.factor: w for w in worst_group(with_preds(table, table.label, colour_reader.reindex(
        table.index).fillna(0)), exp, BOOT)}
    assert set(out) == {"color", "texture", "background"}  # the factors paired with classes
    color = out["color"]
    assert color.groups == 9 and color.smallest > 10
    # the label reader is right everywhere; the colour reader in no group where colour lies
    assert color.accuracy.per_model == [1.0, 0.0]
    assert color.average.per_model[1] == pytest.approx(1 / 3, abs=0.05)
    assert color.accuracy.low == 0.0 and color.accuracy.high == 1.0
    # for another factor the colour reader is right about a third of the time in every group
    assert 0.05 < out["texture"].accuracy.per_model[1] < 0.34


def test_no_balanced_test_split_no_worst_group():
    exp = experiment_from_dict(bare_experiment())
    table = sample_scenes(exp)
    assert worst_group(with_preds(table, table.label), exp, BOOT) == []


# --- sweeps --------------------------------------------------------------------------------------

def test_reference_levels_of_the_default_experiment():
    exp = load_experiment(ROOT / "params.yaml")
    refs = {sw.factor: reference_levels(exp, sw) for sw in exp.sweeps}
    assert refs["color"] == [["red"], ["green"], ["blue"], ["yellow"]]  # paired with each class
    assert refs["iso"] == [["0"]] * 4                                 # the untouched default
    assert refs["jpeg_quality"] == [["0"]] * 4
    assert refs["lens_k1"] == [["0"]] * 4
    assert refs["light_intensity"] == [["1"]] * 4                     # centre 1.025 of [0.8, 1.25]
    assert refs["camera_elevation"] == [["20"]] * 4                   # centre 22.5 of [10, 35]


def iso_experiment():
    return experiment_from_dict(bare_experiment(
        sweeps=[{"factor": "iso", "levels": [0, 800, 3200], "base_scenes": 4},
                {"factor": "color", "levels": ["red", "green", "blue", "orange"],
                 "base_scenes": 6}]))


def test_sweep_accuracy_flip_rates_and_robustness_by_hand():
    exp = iso_experiment()
    table = sample_scenes(exp)
    rows = table[table.sweep == "iso"]
    assert rows.label.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [0] * 3  # base by base
    preds = {"sweep-iso-0000": [0, 0, 1], "sweep-iso-0001": [1, 2, 2],
             "sweep-iso-0002": [2, 2, 2], "sweep-iso-0003": [0, 1, 2]}
    pred = np.zeros(len(table), np.int64)
    pred[table.index.get_indexer(rows.index)] = np.concatenate(list(preds.values()))
    out = sweep_curve(with_preds(table, pred), exp, exp.sweeps[0], BOOT)
    assert out.levels == ["0", "800", "3200"]
    assert out.in_training == [True, False, False]   # iso is not varied: only 0 was seen
    assert out.reference == {"cube": ["0"], "sphere": ["0"], "cone": ["0"]}
    assert [a.value for a in out.accuracy] == [1.0, 0.5, 0.25]
    assert out.accuracy_in_training.value == 1.0
    assert [None if d is None else d.value for d in out.accuracy_drop] == [None, 0.5, 0.75]
    flip = [f.value for f in out.flip_rate]
    assert flip == [None, 0.5, 0.75]   # against the base's prediction at 0 (none at 0 itself)
    assert out.cue_shift is None        # iso indicates no class
    assert not out.flip_rate_in_training.defined  # one training level: no pair of them
    fragile = robustness_table({"sweep": {"iso": out}})
    assert [(r.condition, r.drop.value) for r in fragile] == [
        ("ISO noise = 3200", 0.75), ("ISO noise = 800", 0.5)]
    assert fragile[0].why == "never in training (training had only its default 0)"


def test_a_colour_reader_has_a_full_cue_shift_and_a_label_reader_none():
    exp = iso_experiment()  # colour pairs: cube-red, sphere-green, cone-blue
    table = sample_scenes(exp)
    colour = table.color.map({"red": 0, "green": 1, "blue": 2, "orange": 0})
    out = sweep_curve(with_preds(table, colour), exp, exp.sweeps[1], BOOT)
    assert out.reference == {"cube": ["red"], "sphere": ["green"], "cone": ["blue"]}
    assert out.in_training == [True, True, True, False]
    assert out.indicated == ["cube", "sphere", "cone", None]
    assert out.cue_shift.value == 1.0
    # every change away from the paired colour flips the decision, except cube -> orange
    flip = [f.value for f in out.flip_rate]
    assert flip[:3] == [1.0, 1.0, 1.0]
    assert flip[3] == pytest.approx(4 / 6, abs=1e-6)
    label = sweep_curve(with_preds(table, table.label), exp, exp.sweeps[1], BOOT)
    assert label.cue_shift == Estimate.of(0.0, 0.0, 0.0, 6, [0.0])
    assert all(a.value == 1 for a in label.accuracy)
    assert label.flip_rate_in_training.value == 0


def test_a_model_that_ignores_the_cue_has_a_shift_whose_interval_covers_zero():
    exp = experiment_from_dict(bare_experiment(
        sweeps=[{"factor": "color", "levels": ["red", "green", "blue"], "base_scenes": 60}]))
    table = sample_scenes(exp)
    rng = np.random.default_rng(4)
    guesses = [rng.integers(0, 3, len(table)) for _ in range(3)]  # decisions blind to colour
    out = sweep_curve(with_preds(table, *guesses), exp, exp.sweeps[0], BOOT)
    assert out.models == 3 and len(out.cue_shift.per_model) == 3
    assert out.cue_shift.low < 0 < out.cue_shift.high
    assert out.flip_rate_in_training.value > 0.5  # it flips a lot, but in no direction


def test_an_uncorrelated_categorical_factor_compares_with_every_training_level():
    exp = experiment_from_dict(bare_experiment(
        factors={"material": {"levels": ["glossy", "metal"]}},
        sweeps=[{"factor": "material", "levels": ["matte", "glossy", "metal"],
                 "base_scenes": 4}]))
    assert reference_levels(exp, exp.sweeps[0]) == [["glossy", "metal"]] * 3
    stated = experiment_from_dict(bare_experiment(
        factors={"material": {"levels": ["glossy", "metal"]}},
        sweeps=[{"factor": "material", "levels": ["matte", "glossy", "metal"],
                 "reference": "metal"}]))
    assert reference_levels(stated, stated.sweeps[0]) == [["metal"]] * 3
    table = sample_scenes(exp)
    rows = table.sweep == "material"
    # decides 0 on glossy, 1 on metal, 2 on matte
    pred = table.material.map({"glossy": 0, "metal": 1, "matte": 2}).where(rows, 0)
    out = sweep_curve(with_preds(table, pred), exp, exp.sweeps[0], BOOT)
    assert [f.value for f in out.flip_rate] == [1.0, 1.0, 1.0]  # each against the other(s)
    assert out.in_training == [False, True, True]


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
    refs = [reference_levels(exp, sw) for sw in exp.sweeps]
    # geometric centre 1; median 1.0 -> nearest 1.1; the training level swept; the default;
    # the label: each class's own level
    assert [r[0] for r in refs] == [["1"], ["1.1"], ["metal"], ["none"], ["cube"]]
    assert refs[4][1] == ["sphere"]


def test_a_sweep_with_missing_levels_is_refused():
    exp = iso_experiment()
    table = sample_scenes(exp)
    table = with_preds(table, table.label).drop(index=table[table.sweep == "iso"].index[4])
    with pytest.raises(CuelabError, match="sweep over iso: .*every base scene at every level"):
        sweep_curve(table, exp, exp.sweeps[0], BOOT)


def test_a_sweep_over_the_label_has_the_label_readers_full_shift():
    exp = experiment_from_dict(bare_experiment(
        sweeps=[{"factor": "shape", "levels": ["cube", "sphere", "cone"], "base_scenes": 3}]))
    table = sample_scenes(exp)
    shape_reader = table["shape"].map({"cube": 0, "sphere": 1, "cone": 2})
    colour_reader = table.color.map({"red": 0, "green": 1, "blue": 2})
    out = sweep_curve(with_preds(table, shape_reader, colour_reader), exp, exp.sweeps[0], BOOT)
    assert [a.per_model[0] for a in out.accuracy] == [1.0, 1.0, 1.0]
    assert out.cue_shift.per_model == [1.0, 0.0]
    assert out.cue_shift.low == 0.0 and out.cue_shift.high == 1.0


# --- cue conflicts -------------------------------------------------------------------------------

def conflict_experiment(**overrides):
    return experiment_from_dict(bare_experiment(
        conflicts=[{"factors": ["shape", "color"], "images": 80},
                   {"factors": ["shape", "texture"], "images": 80}], **overrides))


def test_cue_preference_and_decision_matrix_on_sampled_conflicts():
    exp = conflict_experiment()
    table = sample_scenes(exp)
    rows = table[table.conflict == "shape_vs_color"]
    colour_reader = table.color.map({"red": 0, "green": 1, "blue": 2})
    shape_reader = table["shape"].map({"cube": 0, "sphere": 1, "cone": 2})
    out = cue_preference(with_preds(table, shape_reader, colour_reader), exp, "shape", "color",
                         BOOT)
    assert out.images == 80 and out.models == 2
    assert out.preference.per_model == [1.0, 0.0]
    assert out.share_other.value == 0.0
    d = np.array(out.decisions)  # [what a said][what b said][decision], both models
    assert d.sum() == 160
    for ca, cb in zip(rows.class_a, rows.class_b):
        assert d[ca, cb, ca] > 0 and d[ca, cb, cb] > 0
    assert out.excess_a.per_model == [1.0, 0.0] and out.excess_b.per_model == [0.0, 1.0]


def test_other_cues_are_held_neutral_or_balanced_and_their_pull_measured():
    # texture has a level paired with no class (wave): held there; background has none:
    # balanced between the two classes in conflict
    exp = conflict_experiment(factors={
        "color": {"levels": ["red", "green", "blue"], "correlation": {"rho": 1}},
        "texture": {"levels": ["none", "checker", "dots", "wave"], "correlation": {"rho": 0.9}},
        "background": {"levels": ["studio", "sky", "sunset"], "correlation": {"rho": 1}}})
    table = sample_scenes(exp)
    rows = table[table.conflict == "shape_vs_color"]
    assert set(rows.texture) == {"wave"}
    sides = rows.cues.str.extract(r"background=(\w)")[0]
    assert sides.value_counts().to_dict() == {"a": 40, "b": 40}
    said = rows.background.map({"studio": 0, "sky": 1, "sunset": 2}).to_numpy()
    assert (said == np.where(sides == "a", rows.class_a, rows.class_b)).all()
    background_reader = table.background.map({"studio": 0, "sky": 1, "sunset": 2})
    out = cue_preference(with_preds(table, background_reader), exp, "shape", "color", BOOT)
    assert out.held == {"texture": "neutral", "background": "balanced"}
    assert out.pulls["background"].value == 1.0      # it decides every image
    assert out.preference.value == 0.5               # ... and favours neither cue
    assert out.third_cue_share.value == 0.0 and out.third_cue_chance == 0.0
    assert out.excess_a.value == 0 and out.excess_b.value == 0  # neither cue is used


# --- background protocol -------------------------------------------------------------------------

def protocol_table(correct: dict[str, list[int]], models: int = 1) -> pd.DataFrame:
    rows = []
    for variant, hits in correct.items():
        for b, hit in enumerate(hits):
            rows.append({"split": "protocol", "base_id": f"protocol-{b:04d}",
                         "variant": variant, "level": pd.NA, "background": "sky",
                         "label": 1, "pred": 1 if hit else 0})
    table = pd.DataFrame(rows)
    return pd.concat([table.assign(replicate=r) for r in range(models)], ignore_index=True)


def test_background_gap_by_hand():
    exp = experiment_from_dict(bare_experiment(background_protocol={"base_scenes": 4}))
    out = background_protocol(protocol_table({
        "original": [1, 1, 1, 1], "only_fg": [1, 0, 1, 0],
        "mixed_same": [1, 1, 1, 0], "mixed_rand": [0, 1, 0, 0]}), exp, BOOT)
    acc = {v: e.value for v, e in out.accuracy.items()}
    assert acc == {"original": 1.0, "only_fg": 0.5, "mixed_same": 0.75, "mixed_rand": 0.25}
    assert out.gap.value == 0.5 and out.only_fg_drop.value == 0.5
    assert out.base_scenes == 4 and out.chance == pytest.approx(1 / 3, abs=1e-6)


def test_background_variants_are_resampled_together():
    # each base scene scores the same with and without its background: a paired resample
    # sees no difference at all, whatever the base scenes drawn
    exp = experiment_from_dict(bare_experiment(background_protocol={"base_scenes": 5}))
    out = background_protocol(protocol_table({
        "original": [1, 1, 0, 0, 1], "only_fg": [1, 1, 0, 0, 1],
        "mixed_same": [1, 0, 1, 0, 1], "mixed_rand": [1, 0, 1, 0, 1]}, models=2), exp, BOOT)
    assert out.gap == Estimate.of(0.0, 0.0, 0.0, 5, [0.0, 0.0])
    assert out.only_fg_drop == Estimate.of(0.0, 0.0, 0.0, 5, [0.0, 0.0])


def test_background_protocol_without_a_variant_has_no_gap():
    exp = experiment_from_dict(bare_experiment(background_protocol={"base_scenes": 2}))
    out = background_protocol(protocol_table({"original": [1, 0], "only_fg": [0, 0]}), exp,
                              BOOT)
    assert out.gap is None and out.only_fg_drop.value == 0.5


# --- reliance and robustness ---------------------------------------------------------------------

def test_reliance_takes_one_declared_measure_per_factor_never_the_largest():
    e = lambda v: Estimate.of(v, v - 0.1, v + 0.1, 10)  # noqa: E731
    sweeps = {f: SweepResult.model_construct(factor=f, models=1, cue_shift=shift, levels=[],
                                             accuracy_drop=[])
              for f, shift in (("color", e(0.3)), ("background", e(0.2)), ("iso", None))}
    conflicts = {"shape_vs_color": ConflictResult.model_construct(
        factors=("shape", "color"), excess_a=e(0.25), excess_b=e(0.7))}
    background = ProtocolResult.model_construct(gap=e(0.1), only_fg_drop=e(0.5),
                                                black_in_training=False,
                                                accuracy={"only_fg": e(0.4), "original": e(0.9)})
    probes = {"sweep": sweeps, "conflict": conflicts, "protocol": {"background": background}}
    ranking = reliance_ranking(probes)
    # colour: its sweep (precedence over conflicts), not the larger conflict excess;
    # background: the protocol's gap, not the larger sweep shift; iso: none at all
    assert [(r.rank, r.factor, r.reliance.value) for r in ranking] == [
        (1, "color", 0.3), (2, "shape", 0.25), (3, "background", 0.1)]
    color = ranking[0]
    assert color.set_by == ProbeRef(kind="sweep", key="color", measure="cue_shift")
    assert [ev.ref.measure for ev in color.evidence] == ["cue_shift", "excess_b"]
    fragile = robustness_table(probes)
    assert [(r.condition, r.drop.value) for r in fragile] == [
        ("the object alone on black (Only-FG)", 0.5)]


def test_factors_that_indicate_no_class_have_no_reliance():
    exp = iso_experiment()
    assert unreliable(exp, {"iso", "color", "shape", "size"}) == ["iso", "size"]


def test_at_rho_one_an_unpaired_level_never_occurs_so_it_is_neither_neutral_nor_in_training():
    from cuelab.config import unpaired_levels
    from cuelab.scenes import in_training

    exp = conflict_experiment(factors={
        "color": {"levels": ["red", "green", "blue"], "correlation": {"rho": 0.8}},
        "texture": {"levels": ["none", "checker", "dots", "wave"], "correlation": {"rho": 1}}})
    assert unpaired_levels(exp, "texture") == []
    assert not in_training(exp, "texture", "wave") and in_training(exp, "texture", "dots")
    rows = sample_scenes(exp)
    rows = rows[rows.conflict == "shape_vs_color"]
    assert "wave" not in set(rows.texture) and rows.cues.str.contains("texture=[ab]").all()
