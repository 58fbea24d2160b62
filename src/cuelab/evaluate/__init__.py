"""The evaluate step: the trained model on every probe of the experiment -> which cues it uses.

`evaluate(params, scenes, images, models_dir, out, metrics, plots)` predicts every test, sweep,
conflict and protocol image, computes the statistics (`stats`: pure functions over the
predictions), measures attribution against the exact masks (`attribution`), and writes:

    metrics/evaluate.json       headline numbers for `dvc metrics show/diff` (and MLflow, flattened
                                with dots: "sweep.color.max_flip_rate")
    metrics/plots/sweeps/F.json one per swept factor F, a row per level: order, level,
                                accuracy, low, high, flip_rate, flip_low, flip_high
                                (`dvc plots`, with the template sweep_plot.json beside this file)
    metrics/plots/confusion.csv actual, predicted: one row per test image (`dvc plots`, confusion)
    reports/evaluation/         everything, for the trace report:
      results.json              the schema below
      predictions.parquet       image_id, split, label, pred, logit_0 ... logit_<k-1> (class
                                order), for the test and probe rows
      index.html                a one-page summary, figures inlined (the Kubeflow HTML output)
      figures/*.png             sweeps, confusion, conflicts, background, importance, attribution
      attribution/maps.npz      image_ids, labels, preds, images (n,H,W,3) uint8, masks (n,H,W)
                                bool, saliency and occlusion (n,H,W) float32
      attribution/example-NN-{image,mask,saliency,occlusion}.png   the first few, as pictures

and an MLflow run "evaluate" nested under the training run that models/model.json names, with the
flattened metrics, the figures, results.json and the summary page.

results.json (schema 1). An *estimate* is {"value", "low", "high", "n"}: the statistic, its
bootstrap interval at `bootstrap.confidence`, and the number of resampled units (images, or base
scenes where the images of a base scene are paired); value/low/high are null when undefined.

    schema: 1
    experiment: str; classes: [str]; seed: int
    bootstrap: {resamples: int, confidence: float}
    model: {models_dir: str, ...the model's config from model.json}
    iid: {accuracy: estimate, confusion: [[int]] (true x predicted),
          class_accuracy: {class: float|null}}
    sweeps: {factor: {
        factor, stage ("scene"|"sensor"), levels: [str] (as in the scenes table's `level`),
        reference: {class: level}   the level each class's flip rates compare against: the
                                    registry default for a factor the experiment does not vary,
                                    the paired level for a correlated one, else the training centre
                                    (`stats.reference_levels` gives the rules),
        base_scenes: int,
        accuracy: [estimate] per level,
        flip_rate: [estimate] per level: the fraction of base scenes whose prediction at this level
                   differs from their prediction at their reference level (null at the reference),
        reference_accuracy: estimate, max_accuracy_drop: estimate, max_accuracy_drop_level: str,
        max_flip_rate: estimate, max_flip_rate_level: str,
        flip_rate_all_pairs: estimate   over all pairs of levels of each base scene}}
    conflicts: {"a_vs_b": {
        factors: [a, b], images: int,
        preference: estimate   decisions for a's class / decisions for a's or b's class,
        share_a, share_b, share_other: estimate   shares of all decisions,
        decisions: [[[int]]]   counts[class a said][class b said][class chosen],
        preference_matrix: [[float|null]]   the preference per (a's class, b's class)}}
    background: null | {variants: [str], base_scenes: int, accuracy: {variant: estimate},
                        gap: estimate (mixed_same - mixed_rand), only_fg_drop: estimate
                        (original - only_fg); each only when both variants are configured}
    attribution: null | {
        images: int, patch: int, split: "test",
        saliency: {on_object: estimate, object_area: estimate, ratio: estimate},
        occlusion: {on_object: estimate, object_area: estimate, ratio: estimate},
            on_object: mean share of the map's mass inside the mask; object_area: mean share of
            the image the mask covers; ratio: on_object / object_area (1 = blind to the object)
        maps: "attribution/maps.npz",
        examples: [{image_id, label, pred, image, mask, saliency, occlusion}] (PNG paths)}
    importance: [{rank, factor, importance, low, high, measure, detail,
                  evidence: [{probe, measure, detail, value, low, high, n}]}], highest first
    importance_definition: str
    files: {predictions, summary, figures: {name: path}}   paths relative to results.json
    tracking: {tracking_uri, experiment_id, run_id, parent_run_id}   the evaluation's MLflow run
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import replaced_dir, write_json
from ..config import Experiment, load_experiment
from ..data import load_split
from ..errors import CuelabError
from ..sampling import read_scenes
from . import figures as fig
from .page import summary_page
from .stats import (Bootstrap, Estimate, background_protocol, cue_preferences,
                    importance_ranking, iid, sweep_curves)

PROBE_SPLITS = ("test", "sweep", "conflict", "protocol")
EXAMPLES = 8                  # attribution examples saved as pictures
PREDICT_CHUNK = 1024          # images per call to predict (the progress bar's step)
ATTRIBUTION_CHUNK = 16        # images per attribution call (the progress bar's step)
IMPORTANCE_DEFINITION = (
    "A factor's importance is the largest share of the model's decisions that changing it moves, "
    "over all its probes: the largest flip rate of its sweep against the reference level, the "
    "share of conflict decisions that follow its cue, and for the background the background gap "
    "(mixed_same - mixed_rand) and the Only-FG drop (original - only_fg).")


@dataclass
class EvaluateSummary:
    out: Path
    metrics: Path
    plots: Path
    accuracy: float
    ranking: list[tuple[str, float]]
    preferences: dict[str, float | None]
    gap: float | None
    mlflow_run: str
    seconds: float

    def __str__(self) -> str:
        lines = [f"evaluated in {self.seconds:.1f} s: IID test accuracy {self.accuracy:.3f}"]
        if self.ranking:
            lines.append("  factors by importance: " + ", ".join(
                f"{name} {v:.2f}" for name, v in self.ranking[:5])
                + (", ..." if len(self.ranking) > 5 else ""))
        for key, p in self.preferences.items():
            a, b = key.split("_vs_")
            lines.append(f"  cue preference {a} over {b}: "
                         + ("undefined (no decision for either)" if p is None else f"{p:.2f}"))
        if self.gap is not None:
            lines.append(f"  background gap (mixed_same - mixed_rand): {self.gap:.3f}")
        lines.append(f"  wrote {self.metrics}, {self.plots}/, {self.out}/ (results.json, "
                     "index.html, figures)")
        lines.append(f"  MLflow run {self.mlflow_run}, nested under the training run")
        return "\n".join(lines)


def evaluate(params: str | Path | Experiment, scenes: str | Path | pd.DataFrame,
             images: str | Path, models_dir: str | Path,
             out: str | Path = "reports/evaluation",
             metrics: str | Path = "metrics/evaluate.json",
             plots: str | Path = "metrics/plots",
             progress: bool = True) -> EvaluateSummary:
    """The `evaluate` step: the model in `models_dir` on every probe of the experiment."""
    import torch

    from .. import tracking
    from ..train import load_model

    start = time.perf_counter()
    exp = params if isinstance(params, Experiment) else load_experiment(params)
    table = scenes if isinstance(scenes, pd.DataFrame) else read_scenes(scenes)
    use_cuda = exp.train.device != "cpu" and torch.cuda.is_available()
    model, config = load_model(models_dir, device="cuda" if use_cuda else "cpu")
    if config["classes"] != exp.classes:
        raise CuelabError(f"{models_dir}: the model was trained on classes {config['classes']}; "
                          f"the experiment's label.levels are {exp.classes}: train it again "
                          "(`cuelab train`) or evaluate with its own params")
    tracking.connect(config["tracking_uri"])  # before anything slow: fail now if unreachable
    boot = Bootstrap(exp.evaluate.bootstrap, exp.evaluate.confidence, exp.seed)

    preds = predict_probes(model, table, images, progress=progress)
    results = {
        "schema": 1, "experiment": exp.name, "classes": exp.classes, "seed": exp.seed,
        "bootstrap": {"resamples": boot.resamples, "confidence": boot.confidence},
        "model": {"models_dir": str(models_dir), **config},
        "iid": iid(preds, exp.classes, boot),
        "sweeps": sweep_curves(preds, exp, boot),
        "conflicts": cue_preferences(preds, exp, boot),
        "background": (background_protocol(preds, boot)
                       if exp.background_protocol is not None else None),
    }
    results["importance"] = importance_ranking(results["sweeps"], results["conflicts"],
                                               results["background"])
    results["importance_definition"] = IMPORTANCE_DEFINITION

    out, metrics, plots = Path(out), Path(metrics), Path(plots)
    with tracking.start_run(parent_run_id=config["run_id"], run_name="evaluate",
                            tags={"cuelab.step": "evaluate"}) as run:
        with replaced_dir(out) as tmp:
            results["attribution"], examples = _attribution(model, images, preds, exp, boot,
                                                            tmp, progress)
            preds[["image_id", "split", "label", "pred"]
                  + [c for c in preds if c.startswith("logit_")]].to_parquet(
                tmp / "predictions.parquet", index=False)
            results = _jsonable(results)  # once: the figures and results.json read the same
            results["files"] = {"predictions": "predictions.parquet", "summary": "index.html",
                                "figures": _figures(results, examples, tmp)}
            results["tracking"] = {"tracking_uri": config["tracking_uri"],
                                   "experiment_id": run.info.experiment_id,
                                   "run_id": run.info.run_id,
                                   "parent_run_id": config["run_id"]}
            (tmp / "index.html").write_text(summary_page(results, tmp))
            (tmp / "results.json").write_text(json.dumps(results, indent=1))
        headline = headline_metrics(results)
        write_json(metrics, headline)
        _write_plots(plots, results)
        _log_to_mlflow(headline, out)
    return EvaluateSummary(
        out, metrics, plots, results["iid"]["accuracy"]["value"],
        [(r["factor"], r["importance"]) for r in results["importance"]],
        {k: c["preference"]["value"] for k, c in results["conflicts"].items()},
        (results["background"] or {}).get("gap", {}).get("value"),
        run.info.run_id, time.perf_counter() - start)


# --- predictions ---------------------------------------------------------------------------------

def predict_probes(model, table: pd.DataFrame, images: str | Path, batch_size: int = 256,
                   progress: bool = True) -> pd.DataFrame:
    """The scenes table's test and probe rows with the model's `pred` and `logit_<i>` columns."""
    from tqdm import tqdm

    from ..train import predict

    rows = table[table.split.isin(PROBE_SPLITS)]
    parts = []
    with tqdm(total=len(rows), unit="img", desc="predict", disable=not progress) as bar:
        for split in [s for s in PROBE_SPLITS if (rows.split == s).any()]:
            data = load_split(images, split, mmap=True)
            logits = []
            for i in range(0, len(data.image_ids), PREDICT_CHUNK):
                logits.append(predict(model, np.array(data.images[i:i + PREDICT_CHUNK]),
                                      batch_size=batch_size))
                bar.update(len(logits[-1]))
            logits = np.concatenate(logits)
            part = pd.DataFrame(logits, columns=[f"logit_{k}" for k in range(logits.shape[1])])
            part.insert(0, "image_id", data.image_ids)
            part.insert(1, "pred", logits.argmax(1))
            parts.append(part)
    found = pd.concat(parts, ignore_index=True)
    merged = rows.merge(found, on="image_id", how="left", validate="one_to_one")
    missing = merged[merged.pred.isna()]
    if len(missing):
        raise CuelabError(f"{len(missing)} images of the scenes table are not in {images} ("
                          + ", ".join(missing.image_id.head(5))
                          + (", ..." if len(missing) > 5 else "")
                          + "): run `cuelab sensor` on this scenes table first")
    return merged.astype({"pred": np.int64})


# --- attribution ---------------------------------------------------------------------------------

def _attribution(model, images: str | Path, predictions: pd.DataFrame, exp: Experiment,
                 boot: Bootstrap, out: Path, progress: bool) -> tuple[dict | None, tuple]:
    """Saliency and occlusion on the first `evaluate.attribution_images` test images: their
    on-object shares, the maps (attribution/maps.npz) and the first few as pictures; and those
    few as arrays with their captions, for the figure."""
    from PIL import Image
    from tqdm import tqdm

    from .attribution import occlusion, on_object_share, saliency

    n = exp.evaluate.attribution_images
    if n == 0:
        return None, ()
    data = load_split(images, "test", mmap=True)
    n = min(n, len(data.image_ids))
    pics, masks = np.array(data.images[:n]), np.array(data.masks[:n])
    fill = pics.reshape(-1, 3).mean(0) / 255  # one neutral colour for every image
    sal, occ = [], []
    with tqdm(total=n, unit="img", desc="attribution", disable=not progress) as bar:
        for i in range(0, n, ATTRIBUTION_CHUNK):
            sal.append(saliency(model, pics[i:i + ATTRIBUTION_CHUNK]))
            occ.append(occlusion(model, pics[i:i + ATTRIBUTION_CHUNK],
                                 exp.evaluate.occlusion_patch, fill))
            bar.update(len(sal[-1]))
    sal, occ = np.concatenate(sal), np.concatenate(occ)
    preds = predictions.set_index("image_id").loc[data.image_ids[:n], "pred"].to_numpy()
    area = masks.reshape(n, -1).mean(1)
    result: dict = {"images": n, "patch": exp.evaluate.occlusion_patch, "split": "test"}
    for name, maps in (("saliency", sal), ("occlusion", occ)):
        share = on_object_share(maps, masks)
        ok = ~np.isnan(share)  # a map with no mass says nothing about where
        result[name] = {
            "on_object": boot.mean(f"attribution:{name}", share[ok]),
            "object_area": boot.mean(f"attribution:{name}", area[ok]),
            "ratio": boot.ratio(f"attribution:{name}", share[ok], area[ok])}

    folder = out / "attribution"
    folder.mkdir()
    np.savez_compressed(folder / "maps.npz", image_ids=data.image_ids[:n],
                        labels=data.labels[:n], preds=preds, images=pics, masks=masks,
                        saliency=sal.astype(np.float32), occlusion=occ.astype(np.float32))
    examples = []
    for i in range(min(EXAMPLES, n)):
        files = {"image": pics[i], "mask": masks[i].astype(np.uint8) * 255,
                 "saliency": _heat(sal[i]), "occlusion": _heat(occ[i])}
        entry = {"image_id": str(data.image_ids[i]), "label": int(data.labels[i]),
                 "pred": int(preds[i])}
        for kind, pixels in files.items():
            path = folder / f"example-{i:02d}-{kind}.png"
            Image.fromarray(pixels).save(path)
            entry[kind] = str(path.relative_to(out))
        examples.append(entry)
    result["maps"] = "attribution/maps.npz"
    result["examples"] = examples
    captions = [f"{e['image_id']}\ntrue {exp.classes[e['label']]}, chose "
                f"{exp.classes[e['pred']]}" for e in examples]
    return result, (pics[:EXAMPLES], masks[:EXAMPLES], sal[:EXAMPLES], occ[:EXAMPLES], captions)


def _heat(m: np.ndarray) -> np.ndarray:
    """A map as an RGB heat picture, scaled to its own maximum."""
    from matplotlib import colormaps

    top = m.max()
    rgb = colormaps["inferno"](m / top if top > 0 else m)[..., :3]
    return (rgb * 255).astype(np.uint8)


# --- outputs -------------------------------------------------------------------------------------

def _figures(results: dict, examples: tuple, out: Path) -> dict[str, str]:
    made = {}
    if results["sweeps"]:
        made["sweeps"] = fig.sweeps_figure(results["sweeps"])
    made["confusion"] = fig.confusion_figure(results["iid"]["confusion"], results["classes"])
    if results["conflicts"]:
        made["conflicts"] = fig.conflicts_figure(results["conflicts"])
    if results["background"]:
        made["background"] = fig.background_figure(results["background"])
    if results["importance"]:
        made["importance"] = fig.importance_figure(results["importance"])
    if examples:
        made["attribution"] = fig.attribution_figure(*examples)
    return {name: str(fig.save(f, out / "figures" / f"{name}.png").relative_to(out))
            for name, f in made.items()}


def headline_metrics(results: dict) -> dict:
    """The numbers `dvc metrics` compares across experiments, nested (dvc and MLflow flatten
    them with dots). Undefined numbers are left out."""
    def est(e: dict, name: str) -> dict:
        return {k: v for k, v in ((name, e["value"]), (f"{name}_low", e["low"]),
                                  (f"{name}_high", e["high"])) if v is not None}

    m: dict = {"iid": est(results["iid"]["accuracy"], "accuracy")}
    m["sweep"] = {
        name: {**est(s["max_flip_rate"], "max_flip_rate"),
               **est(s["max_accuracy_drop"], "max_accuracy_drop"),
               **est(s["flip_rate_all_pairs"], "flip_rate_all_pairs")}
        for name, s in results["sweeps"].items()}
    m["preference"] = {k: est(c["preference"], "preference")
                       for k, c in results["conflicts"].items()}
    bg = results["background"]
    if bg:
        m["background"] = {v: a["value"] for v, a in bg["accuracy"].items()
                           if a["value"] is not None}
        for key in ("gap", "only_fg_drop"):
            if key in bg:
                m["background"].update(est(bg[key], key))
    att = results["attribution"]
    if att:
        m["attribution"] = {
            f"{name}_{part}": att[name][part]["value"]
            for name in ("saliency", "occlusion") for part in ("on_object", "object_area")
            if att[name][part]["value"] is not None}
    m["importance"] = {r["factor"]: r["importance"] for r in results["importance"]}
    return {k: v for k, v in m.items() if v}


def flatten(d: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _write_plots(plots: Path, results: dict) -> None:
    """Plot data for `dvc plots`: one JSON table per sweep (typed numbers, so the template can
    keep the sweep's order), and the test decisions for the confusion matrix. The folder is
    replaced as a whole, so a factor no longer swept leaves no file behind."""
    with replaced_dir(plots) as tmp:
        (tmp / "sweeps").mkdir()
        for name, s in results["sweeps"].items():
            records = [{"order": i, "level": level,
                        "accuracy": acc["value"], "low": acc["low"], "high": acc["high"],
                        "flip_rate": flip["value"], "flip_low": flip["low"],
                        "flip_high": flip["high"]}
                       for i, (level, acc, flip) in enumerate(zip(s["levels"], s["accuracy"],
                                                                  s["flip_rate"]))]
            (tmp / "sweeps" / f"{name}.json").write_text(json.dumps(records, indent=1))
        cm = np.asarray(results["iid"]["confusion"])
        classes = np.asarray(results["classes"])
        true, chosen = np.nonzero(cm)
        counts = cm[true, chosen]
        pd.DataFrame({"actual": np.repeat(classes[true], counts),
                      "predicted": np.repeat(classes[chosen], counts)}
                     ).to_csv(tmp / "confusion.csv", index=False)


def _jsonable(obj):
    if isinstance(obj, Estimate):
        return obj.to_dict()
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


# --- MLflow --------------------------------------------------------------------------------------

def _log_to_mlflow(headline: dict, out: Path) -> None:
    """Into the active (evaluation) run: the flattened metrics, the figures, results.json and
    the summary page."""
    import mlflow

    from .. import tracking

    with tracking.mlflow_errors("logging the evaluation"):
        mlflow.log_metrics(flatten(headline))
        mlflow.set_tag("importance_definition", IMPORTANCE_DEFINITION)
        mlflow.log_artifacts(str(out / "figures"), "figures")
        mlflow.log_artifact(str(out / "results.json"))
        mlflow.log_artifact(str(out / "index.html"))
