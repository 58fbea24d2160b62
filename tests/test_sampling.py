"""The scenes table: correlations as specified, exact splits, true counterfactual pairs,
conflicts in conflict, determinism, rows independent of the table's size."""

import numpy as np
import pandas as pd
import pytest

from conftest import bare_experiment, tiny_experiment
from cuelab.config import PROTOCOL_FOREGROUNDS, experiment_from_dict
from conftest import ROOT
from cuelab.config import load_experiment
from cuelab.factors import FACTOR_NAMES, REGISTRY, SCENE_FACTOR_NAMES, Factor
from cuelab.sampling import sample, sample_scenes
from cuelab.scenes import agreement, columns, indicates, render_ids
from cuelab.validate import expected_agreement


@pytest.fixture(scope="module")
def tiny():
    exp = experiment_from_dict(tiny_experiment())
    return exp, sample_scenes(exp)


@pytest.fixture(scope="module")
def big():
    """10,000 training rows with correlations of every kind."""
    exp = experiment_from_dict(bare_experiment(
        label={"factor": "shape", "levels": ["cube", "sphere", "cylinder", "cone"]},
        splits={"train": 10_000, "val": 1, "test": 1},
        factors={
            "color": {"levels": ["red", "green", "blue", "yellow", "gray"],
                      "weights": [1, 1, 1, 1, 4], "correlation": {"rho": 0.6}},
            "texture": {"levels": ["none", "checker", "dots", "wave"],
                        "correlation": {"rho": 0.3, "pairs": {"cube": "wave", "sphere": "dots",
                                                              "cylinder": "none",
                                                              "cone": "checker"}}},
            "size": {"range": [0.5, 1.5], "correlation": {"rho": 0.5}},
            "light_temperature": {"range": [2000, 10000], "distribution": "normal",
                                  "correlation": {"rho": 0.4, "pairs": {
                                      "cube": [2000, 4000], "sphere": [4000, 6000],
                                      "cylinder": [6000, 8000], "cone": [8000, 10000]}}},
            "jpeg_quality": {"range": [10, 90], "correlation": {"rho": 0.7}},
            "camera_distance": {"range": [0.8, 2.0], "distribution": "loguniform",
                                "correlation": {"rho": 0.2}},
            "material": {"levels": ["matte", "glossy", "metal"]},
        }))
    return exp, sample_scenes(exp)


@pytest.mark.parametrize("name", ["color", "texture", "size", "light_temperature",
                                  "jpeg_quality", "camera_distance"])
def test_correlation_agreement_within_002_of_its_specification(big, name):
    exp, df = big
    train = df[df.split == "train"]
    assert len(train) == 10_000
    expected = expected_agreement(exp, name)
    assert abs(agreement(train, exp, name) - expected) <= 0.02
    # and it is not trivially satisfied: a shuffled label breaks it for rho > 0
    shuffled = train.assign(label=np.random.default_rng(0).permutation(train.label.to_numpy()))
    assert abs(agreement(shuffled, exp, name) - expected) > 0.02


def test_uncorrelated_factor_is_independent_of_the_label(big):
    _, df = big
    table = pd.crosstab(df.label, df.material, normalize="index")
    assert np.allclose(table.to_numpy(), 1 / 3, atol=0.03)


def test_values_in_domain_and_typed(big, tiny):
    for exp, df in (big, tiny):
        for name in FACTOR_NAMES:
            f, spec = REGISTRY[name], exp.factors.get(name)
            values = df[name]
            assert values.notna().all()
            if f.is_categorical:
                assert all(f.accepts(v) for v in values.unique())
            else:
                assert values.dtype == (np.int64 if f.integer else np.float64)
                lo, hi = spec.range if spec and spec.range else (f.low, f.high)
                assert values.between(lo, hi).all()


def test_split_sizes_exact_ids_unique_classes_balanced(tiny):
    exp, df = tiny
    assert list(df.columns) == columns()
    assert df.image_id.is_unique
    counts = df.split.value_counts().to_dict()
    assert counts == exp.row_counts()
    train = df[df.split == "train"]
    assert train.label.value_counts().tolist() == [10, 10, 10]
    # the label factor's column names the class
    assert (np.asarray(exp.classes, dtype=object)[df.label] == df["shape"].to_numpy()).all()


def test_sweep_pairs_differ_only_in_the_swept_factor(tiny):
    exp, df = tiny
    sweeps = df[df.split == "sweep"]
    for sweep in exp.sweeps:
        rows = sweeps[sweeps.sweep == sweep.factor]
        levels = exp.sweep_levels(sweep)
        assert len(rows) == sweep.base_scenes * len(levels)
        for base_id, pair in rows.groupby("base_id"):
            assert sorted(pair[sweep.factor].tolist()) == sorted(levels)
            others = [c for c in FACTOR_NAMES + ("seed", "label") if c != sweep.factor]
            assert (pair[others].nunique() == 1).all(), (base_id, pair[others].nunique())


def test_sensor_sweeps_reuse_one_render_scene_sweeps_do_not(tiny):
    _, df = tiny
    iso = df[df.sweep == "iso"].groupby("base_id").render_id.nunique()
    color = df[df.sweep == "color"].groupby("base_id").render_id.nunique()
    assert (iso == 1).all() and (color == 4).all()
    # rows that share a render have every scene factor equal, and rows that differ in any
    # scene factor never share one
    scene = df[list(SCENE_FACTOR_NAMES)].astype(str)
    assert (scene.groupby(df.render_id).nunique() == 1).all().all()
    assert not scene.drop_duplicates().duplicated().any()
    assert scene.drop_duplicates().shape[0] == df.render_id.nunique()


def test_probes_are_decorrelated():
    exp = experiment_from_dict(bare_experiment(
        factors={"color": {"levels": ["red", "green", "blue"], "correlation": {"rho": 1.0}}},
        sweeps=[{"factor": "size", "levels": [0.5, 1.0], "base_scenes": 3000}]))
    df = sample_scenes(exp)
    assert agreement(df[df.split == "train"], exp, "color") == 1.0
    base = df[(df.split == "sweep") & (df.level == "0.5")]
    assert abs(agreement(base, exp, "color") - 1 / 3) < 0.03


def test_conflict_rows_are_in_conflict(tiny):
    exp, df = tiny
    rows = df[df.split == "conflict"]
    assert len(rows) == 12 and (rows.conflict == "shape_vs_color").all()
    assert (rows.class_a != rows.class_b).all()
    pairs = exp.pairs("color")
    for _, r in rows.iterrows():
        assert r["shape"] == exp.classes[r.class_a] and r.label == r.class_a
        assert r["color"] == pairs[r.class_b]
    # each ordered pair of classes appears: conflicts cover the confusion matrix
    many = sample_scenes(experiment_from_dict(tiny_experiment(
        conflicts=[{"factors": ["color", "texture"], "images": 600}])))
    rows = many[many.split == "conflict"]
    assert len(rows.groupby(["class_a", "class_b"])) == 6
    tex = experiment_from_dict(tiny_experiment()).pairs("texture")
    assert (rows.texture.to_numpy() == np.asarray(tex, dtype=object)[rows.class_b]).all()


def test_background_protocol_variants(tiny):
    exp, df = tiny
    rows = df[df.split == "protocol"]
    assert sorted(rows.variant.unique()) == sorted(exp.background_protocol.variants)
    assert (rows[rows.variant == "only_fg"].background == "black").all()
    for _, group in rows.groupby("base_id"):
        others = [c for c in FACTOR_NAMES if c not in ("background", "foreground")] + [
            "seed", "label"]
        assert (group[others].nunique() == 1).all()


def test_background_protocol_foregrounds_and_worst_case(tiny):
    """Only-BG-B, Only-BG-T and No-FG: the original's row with the object blacked out, tiled
    over, removed; the worst case: the base scene on every training background, in order."""
    exp, df = tiny
    rows = df[df.split == "protocol"]
    training = exp.factors["background"].levels
    assert exp.background_protocol.variants == [  # the default: all but only_fg_neutral
        "original", "only_fg", "only_bg_b", "only_bg_t", "no_fg", "mixed_same", "mixed_rand",
        "mixed_next", "worst_case"]
    assert len(rows) == exp.row_counts()["protocol"] == 5 * (8 + len(training))
    for b, (base_id, group) in enumerate(rows.groupby("base_id", sort=True)):
        by = group.set_index("variant", drop=False)
        original = by.loc["original"]
        assert original.image_id == f"{base_id}-original"
        for variant, fg in (("only_bg_b", "black"), ("only_bg_t", "tiled"), ("no_fg", "removed")):
            row = by.loc[variant]
            assert row.image_id == f"{base_id}-{variant}" and row.foreground == fg
            assert row.background == original.background and row.label == original.label
            assert row.render_id != original.render_id
        worst = group[group.variant == "worst_case"]
        assert worst.background.tolist() == worst.level.tolist() == list(training)
        assert worst.image_id.tolist() == [f"{base_id}-worst_case-{j:02d}"
                                           for j in range(len(training))]
        assert (worst.foreground == "object").all()
        plain = group[~group.variant.isin(["only_bg_b", "only_bg_t", "no_fg"])]
        assert (plain.foreground == "object").all()
        assert group[group.variant != "worst_case"].level.isna().all()
    # a worst-case row on the original's background is the original's render
    shared = rows[rows.variant == "worst_case"].merge(
        rows[rows.variant == "original"], on=["base_id", "background"])
    assert len(shared) == 5 and (shared.render_id_x == shared.render_id_y).all()


def test_adding_protocol_variants_changes_no_existing_row():
    """The four variants there were before, with and without the six added: the same rows."""
    old = ["original", "only_fg", "mixed_same", "mixed_rand"]
    factors = dict(tiny_experiment()["factors"])
    factors["background"] = {"levels": ["studio", "sky", "sunset", "white"],
                             "correlation": {"rho": 0.7}}
    before = sample_scenes(experiment_from_dict(tiny_experiment(
        factors=factors, background_protocol={"base_scenes": 5, "variants": old})))
    every = sample_scenes(experiment_from_dict(tiny_experiment(
        factors=factors, background_protocol={"base_scenes": 5, "variants": [
            "original", "only_fg", "only_fg_neutral", "only_bg_b", "only_bg_t", "no_fg",
            "mixed_same", "mixed_rand", "mixed_next", "worst_case"]})))
    assert len(every[every.split == "protocol"]) == 5 * (9 + 4)
    pd.testing.assert_frame_equal(
        every[every.image_id.isin(before.image_id)].reset_index(drop=True),
        before.reset_index(drop=True), check_exact=True)
    assert (before.foreground == "object").all()


def test_mixed_next_draws_the_background_of_the_next_class():
    exp = experiment_from_dict(bare_experiment(
        factors={"background": {"levels": ["studio", "sky", "sunset"],
                                "correlation": {"rho": 1.0}}},
        background_protocol={"base_scenes": 300}))
    rows = sample_scenes(exp).query("split == 'protocol' and variant == 'mixed_next'")
    pairs = np.asarray(exp.pairs("background"), dtype=object)
    assert (rows.background.to_numpy() == pairs[(rows.label.to_numpy() + 1) % 3]).all()
    # with rho 0.7: the next class's level where the correlation paired it, else a free draw
    exp = experiment_from_dict(bare_experiment(
        factors={"background": {"levels": ["studio", "sky", "sunset"],
                                "correlation": {"rho": 0.7}}},
        background_protocol={"base_scenes": 3000}))
    rows = sample_scenes(exp).query("split == 'protocol'")
    nxt, same = (rows[rows.variant == v].sort_values("base_id") for v in
                 ("mixed_next", "mixed_same"))
    labels = nxt.label.to_numpy()
    next_class = indicates(exp, "background", nxt.background.to_numpy(), (labels + 1) % 3)
    assert abs(next_class.mean() - expected_agreement(exp, "background")) < 0.03
    assert abs(agreement(nxt, exp, "background") - 0.1) < 0.03  # (1 - rho) / 3
    # the same draws as Mixed-Same: where one took its class's level, so did the other
    paired_same = same.background.to_numpy() == np.asarray(exp.pairs("background"),
                                                            dtype=object)[labels]
    assert (next_class | ~paired_same).mean() > 0.85


def test_only_fg_neutral_is_on_the_neutral_training_backdrop():
    levels = ["studio", "sky", "sunset", "white"]  # 3 classes: white pairs with none
    variants = ["original", "only_fg", "only_fg_neutral"]

    def rows(**protocol):
        exp = experiment_from_dict(bare_experiment(
            factors={"background": {"levels": levels, "correlation": {"rho": 0.7}}},
            background_protocol={"base_scenes": 4, "variants": variants, **protocol}))
        df = sample_scenes(exp)
        return exp, df[df.split == "protocol"]

    exp, df = rows()
    assert exp.neutral_background() == "white"
    neutral = df[df.variant == "only_fg_neutral"]
    assert len(neutral) == 4 and (neutral.background == "white").all()
    assert (neutral.foreground == "object").all()
    assert neutral.image_id.tolist() == [f"protocol-{b:04d}-only_fg_neutral" for b in range(4)]
    others = [c for c in FACTOR_NAMES if c != "background"] + ["seed", "label"]
    for _, group in df.groupby("base_id"):
        assert (group[others].nunique() == 1).all()
    exp, df = rows(neutral="white")
    assert (df[df.variant == "only_fg_neutral"].background == "white").all()


def test_background_protocol_follows_class_conditionals():
    exp = experiment_from_dict(bare_experiment(
        factors={"background": {"levels": ["studio", "sky", "sunset"],
                                "correlation": {"rho": 1.0}}},
        background_protocol={"base_scenes": 600}))
    rows = sample_scenes(exp).query("split == 'protocol'")
    same = rows[rows.variant == "mixed_same"]
    rand = rows[rows.variant == "mixed_rand"]
    assert agreement(same, exp, "background") == 1.0
    assert abs(agreement(rand, exp, "background") - 1 / 3) < 0.06


def test_deterministic_byte_identical_tables(tmp_path, tiny_params):
    a = sample(tiny_params, tmp_path / "a.parquet")
    b = sample(tiny_params, tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert a.rows == b.rows and not list(tmp_path.glob(".*tmp"))


def test_a_row_depends_only_on_seed_group_and_index():
    small = sample_scenes(experiment_from_dict(tiny_experiment()))
    bigger = sample_scenes(experiment_from_dict(tiny_experiment(
        splits={"train": 90, "val": 6, "test": 20},
        sweeps=[{"factor": "iso", "levels": [0, 1600], "base_scenes": 4}])))
    key = small.set_index("image_id")
    other = bigger.set_index("image_id")
    shared = key.index.intersection(other.index)
    assert len(shared) == len(key) - 5 * 4 - 3 * 3  # all but the dropped sweeps
    pd.testing.assert_frame_equal(key.loc[shared], other.loc[shared])
    # another seed gives another table
    reseeded = sample_scenes(experiment_from_dict(tiny_experiment(seed=4)))
    assert not reseeded.seed.equals(small.seed)


def _with(registry: dict, after: str, new: Factor) -> dict:
    """The registry with `new` inserted after the factor `after`."""
    items = list(registry.items())
    at = [name for name, _ in items].index(after) + 1
    return dict(items[:at] + [(new.name, new)] + items[at:])


NEW_SCENE = Factor("test_gloss", "scene", "A scene factor added by a test.", default=0.5,
                   low=0.0, high=1.0)
NEW_SENSOR = Factor("test_gain", "sensor", "A sensor factor added by a test.", default=1.0,
                    low=0.5, high=2.0)
REAL_NEW = ("ambient", "prnu", "foreground")  # the factors added after the streams were named


@pytest.mark.parametrize("change", ["test factors", "the real new factors"])
def test_adding_factors_changes_no_existing_column_and_no_render(change):
    """A registry with more factors gives the default experiment's table with new columns,
    every other column byte-identical, every render id the same."""
    exp = load_experiment(ROOT / "params.yaml")
    # the protocol's object-less variants use one of the new factors (foreground): an
    # experiment that asks for them is not one the older registry could express
    protocol = exp.background_protocol.model_copy(update={"variants": [
        v for v in exp.background_protocol.variants if v not in PROTOCOL_FOREGROUNDS]})
    exp = exp.model_copy(update={"background_protocol": protocol})
    if change == "test factors":
        before = dict(REGISTRY)
        after = _with(_with(before, "light_temperature", NEW_SCENE), "lens_k1", NEW_SENSOR)
    else:
        before = {k: f for k, f in REGISTRY.items() if k not in REAL_NEW}
        after = dict(REGISTRY)
        assert len(after) == len(before) + len(REAL_NEW)
    old, new = sample_scenes(exp, before), sample_scenes(exp, after)
    added = [c for c in new.columns if c not in old.columns]
    assert sorted(added) == sorted(set(after) - set(before))
    pd.testing.assert_frame_equal(new.drop(columns=added), old, check_exact=True)
    for name in added:
        assert (new[name] == after[name].default).all()


def test_render_ids_hash_only_what_a_render_depends_on(tiny):
    exp, df = tiny
    rows = df[df.split == "train"].head(3).copy()
    ids = rows.render_id.tolist()
    changed = rows.assign(iso=800, jpeg_quality=30, seed=rows.seed + 1)  # sensor, seed
    assert render_ids(changed) == ids
    assert render_ids(rows.assign(size=rows["size"] + 0.01)) != ids
    # where an occluder stands comes from the seed: then the seed matters
    occluded = rows.assign(occluder="bar")
    assert render_ids(occluded.assign(seed=occluded.seed + 1)) != render_ids(occluded)
