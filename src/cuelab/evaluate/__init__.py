"""The evaluate step: the trained model on every probe of the experiment -> which cues it uses.

`evaluate(params, scenes, images, models_dir, out, metrics, plots)` predicts every test, balanced
test, sweep, conflict and protocol image with every trained replicate, computes the statistics
(IID and worst-group accuracy, the reliance ranking and the robustness table in `stats`, each
probe kind's in its module of `cuelab.probes`: pure functions over the predictions), measures
attribution against the exact masks (`attribution`), and writes:

    metrics/evaluate.json       headline numbers for `dvc metrics show/diff` (and MLflow, flattened
                                with dots: "sweep.color.max_flip_rate")
    metrics/plots/sweeps/F.json one per swept factor F, a row per level: order, level,
                                accuracy, low, high, flip_rate, flip_low, flip_high, and in
                                words factor ("Defocus blur") and level_text ("0.5 px")
                                (`dvc plots`, with the template sweep_plot.json beside this file)
    metrics/plots/confusion.csv actual, predicted, count, actual_order, predicted_order: every
                                cell of the test confusion matrix, zeros too, with the classes'
                                places in the label order (`dvc plots`, with the template
                                cuelab/web/confusion_plot.json)
    reports/evaluation/         everything, for the trace report:
      results.json              `cuelab.results.Results` (schema 3)
      predictions.parquet       image_id, split, label, replicate, pred, logit_0 ...
                                logit_<k-1> (class order): every test and probe row, per model
      index.html                the trace page of this evaluation (the Kubeflow HTML output)
      figures/*.png             the page's figures: one per probe (sweep-color.png,
                                conflict-shape_vs_color.png, protocol-background.png), confusion,
                                and the attribution examples
      attribution/maps.npz      image_ids, labels, preds, images (n,H,W,3) uint8, masks (n,H,W)
                                bool, saliency and occlusion (n,H,W) float32 (replicate 0)
      attribution/example-NN-{image,mask,saliency,occlusion}.png   the first few, as pictures

and an MLflow run "evaluate" nested under the training run that models/mlflow-run.json names,
with the experiment as parameters, the flattened metrics (linked to the @champion model), the
figures, results.json and the page; the headline cue metrics also go onto the training run
("cue.reliance.color", ...), beside the settings it was trained with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import npz_bytes, replaced_dir, write_json
from ..config import Experiment
from ..cores import cap_torch_threads
from ..data import load_split
from ..errors import CuelabError
from ..probes import PROBE_KINDS
from ..probes.estimate import Bootstrap
from ..report import experiment_and_text
from ..results import (AttributionExample, AttributionResult, AttributionShares, Files, Results,
                       Tracking)
from ..scenes import read_scenes
from .stats import (RELIANCE_DEFINITION, ROBUSTNESS_DEFINITION, iid, reliance_ranking,
                    robustness_table, unreliable, worst_group)

PROBE_SPLITS = ("test", "test_balanced", "sweep", "conflict", "protocol")
EXAMPLES = 8                  # attribution examples saved as pictures
PREDICT_CHUNK = 1024          # images per call to predict (the progress bar's step)
ATTRIBUTION_CHUNK = 16        # images per attribution call (the progress bar's step)


@dataclass
class EvaluateSummary:
    out: Path
    metrics: Path
    plots: Path
    models: int
    accuracy: float
    ranking: list[tuple[str, float]]
    fragile: list[tuple[str, float]]
    preferences: dict[str, float | None]
    gap: float | None
    mlflow_run: str
    seconds: float

    def __str__(self) -> str:
        lines = [f"evaluated {self.models} model{'s' if self.models > 1 else ''} in "
                 f"{self.seconds:.1f} s: IID test accuracy {self.accuracy:.3f}"]
        if self.ranking:
            lines.append("  reliance (in-distribution): " + ", ".join(
                f"{name} {v:.2f}" for name, v in self.ranking[:5])
                + (", ..." if len(self.ranking) > 5 else ""))
        if self.fragile:
            lines.append("  largest accuracy drops outside training: " + ", ".join(
                f"{what} {v:.2f}" for what, v in self.fragile[:3]))
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

    @classmethod
    def of(cls, results: Results, run_id: str, out: Path, metrics: Path, plots: Path,
           seconds: float) -> EvaluateSummary:
        background = results.of("protocol").get("background")
        return cls(out, metrics, plots, len(results.models), results.iid.accuracy.value,
                   [(r.factor, r.reliance.value) for r in results.reliance],
                   [(r.condition, r.drop.value) for r in results.robustness],
                   {k: c.preference.value for k, c in results.of("conflict").items()},
                   background.gap.value if background and background.gap else None,
                   run_id, seconds)


def evaluate(params: str | Path | Experiment, scenes: str | Path | pd.DataFrame,
             images: str | Path, models_dir: str | Path,
             out: str | Path = "reports/evaluation",
             metrics: str | Path = "metrics/evaluate.json",
             plots: str | Path = "metrics/plots",
             progress: bool = True) -> EvaluateSummary:
    """The `evaluate` step: every trained replicate in `models_dir` on every probe of the
    experiment."""
    from .. import tracking

    start = time.perf_counter()
    exp, params_text = experiment_and_text(params)
    table = scenes if isinstance(scenes, pd.DataFrame) else read_scenes(scenes)
    models = _models(exp, models_dir, images)
    # the store the user configured (not the one recorded beside the model: a copied models
    # folder must not write into the project it came from); nested under the training run
    # when that run is in it
    tracking.connect()  # before anything slow: fail now if unreachable
    tracking.close_orphans(exp.name)
    trained = tracking.read_run_link(models_dir) or {}
    parent = trained.get("run_id") if tracking.run_exists(trained.get("run_id")) else None
    boot = Bootstrap(exp.evaluate.bootstrap, exp.evaluate.confidence, exp.evaluate.seed)
    preds = pd.concat([predict_probes(model, table, images, progress=progress).assign(
        replicate=r) for r, (model, _) in enumerate(models)], ignore_index=True)
    probes = {name: kind.statistics(preds, exp, boot) for name, kind in PROBE_KINDS.items()}

    out, metrics, plots = Path(out), Path(metrics), Path(plots)
    with tracking.start_run(exp.name, parent_run_id=parent,
                            run_name=tracking.run_name("evaluate", exp.name),
                            tags={"cuelab.step": "evaluate",
                                  "cuelab.training_run": trained.get("run_id", "unknown")}
                            ) as run:
        with replaced_dir(out) as tmp:
            attribution = _attribution([m for m, _ in models], images, preds, exp, boot, tmp,
                                       progress)
            _write_predictions(preds, tmp)
            ranking = reliance_ranking(probes)
            probed = {f for name, kind in PROBE_KINDS.items()
                      for result in probes[name].values() for f in kind.factors(result)}
            results = Results(
                experiment=exp.name, classes=exp.classes, seed=exp.seed,
                bootstrap={"resamples": boot.resamples, "confidence": boot.confidence,
                           "seed": boot.seed},
                models=[{"models_dir": str(models_dir), **config} for _, config in models],
                iid=iid(preds, exp.classes, boot), worst_group=worst_group(preds, exp, boot),
                probes=probes, attribution=attribution,
                reliance=ranking, robustness=robustness_table(probes),
                not_cues=[f for f in unreliable(exp, probed)
                          if f not in {r.factor for r in ranking}],
                reliance_definition=RELIANCE_DEFINITION,
                robustness_definition=ROBUSTNESS_DEFINITION,
                files=Files(predictions="predictions.parquet", summary="index.html", figures={}))
            results = _write_results(results, exp, params_text, tmp)
            write_json(tmp / tracking.RUN_FILE, _tracking(parent, run).model_dump())
        headline = headline_metrics(results)
        write_json(metrics, headline)
        _write_plots(plots, results)
        # the champion's logged model, when its training is in this store (not a copied folder's)
        _log_to_mlflow(exp, headline, out, parent,
                       champion_model_id(models_dir) if parent is not None else None)
    return EvaluateSummary.of(results, run.info.run_id, out, metrics, plots,
                              time.perf_counter() - start)


def _models(exp: Experiment, models_dir: str | Path, images: str | Path):
    """The trained replicates (on CUDA when the experiment allows and there is one) and their
    configs, checked against the experiment (its name, its classes) and the images (their size,
    the dataset the models were trained on)."""
    import torch

    from .. import tracking
    from ..data import read_index
    from ..train import load_models, read_config, replicate_folders

    size = load_split(images, "test", mmap=True).images.shape[1]
    present = set(read_index(images).split)
    for split in PROBE_SPLITS[1:]:  # every shard the predictions read, checked at the door
        if split in present:
            load_split(images, split, mmap=True)
    version = tracking.dataset_version(images)
    again = "train them again (`cuelab train`) or evaluate with their own params and data"
    for folder in replicate_folders(models_dir):  # before building any network from them
        where, config = folder, read_config(folder)
        for what, theirs, ours in (
                ("classes", config["classes"], exp.classes),
                ("experiment", config.get("experiment"), exp.name),
                ("input size (px)", config.get("input_size"), size),
                ("dataset version", config.get("dataset_version"), version)):
            if theirs != ours:
                raise CuelabError(f"{where}: trained with {what} {theirs!r}; the experiment "
                                  f"and the images {images} have {ours!r}: {again}")
    use_cuda = exp.train.device != "cpu" and torch.cuda.is_available()
    cap_torch_threads()  # a container's CPU limit, not the node's cores
    return load_models(models_dir, device="cuda" if use_cuda else "cpu")


def _tracking(parent: str | None, run) -> Tracking:
    """reports/evaluation/mlflow-run.json: the evaluation's run and the training run above it
    (None when that run is not in this store); apart from results.json (DVC ignores it): run
    ids differ from run to run, the results not."""
    import mlflow

    return Tracking(tracking_uri=mlflow.get_tracking_uri(), experiment_id=run.info.experiment_id,
                    run_id=run.info.run_id, parent_run_id=parent)


# --- predictions ---------------------------------------------------------------------------------

def predict_probes(model, table: pd.DataFrame, images: str | Path, batch_size: int = 64,
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


def _write_predictions(preds: pd.DataFrame, out: Path) -> None:
    preds[["image_id", "split", "label", "replicate", "pred"]
          + [c for c in preds if c.startswith("logit_")]
          ].to_parquet(out / "predictions.parquet", index=False)


# --- attribution ---------------------------------------------------------------------------------

def _attribution(models: list, images: str | Path, predictions: pd.DataFrame, exp: Experiment,
                 boot: Bootstrap, out: Path, progress: bool) -> AttributionResult | None:
    """Saliency and occlusion of every replicate on the first `evaluate.attribution_images` test
    images: their on-object shares (intervals over models, then images), the first replicate's
    maps (attribution/maps.npz) and the first few as pictures."""
    from .attribution import on_object_share

    n = exp.evaluate.attribution_images
    if n == 0:
        return None
    data = load_split(images, "test", mmap=True)
    n = min(n, len(data.image_ids))
    pics, masks = np.array(data.images[:n]), np.array(data.masks[:n])
    maps = [_attribution_maps(m, pics, exp.evaluate.occlusion_patch, progress) for m in models]
    sal, occ = maps[0]
    first = predictions[predictions.replicate == 0].set_index("image_id")
    preds = first.loc[data.image_ids[:n], "pred"].to_numpy()
    area = np.broadcast_to(masks.reshape(n, -1).mean(1), (len(models), n))
    shares = {}
    for j, name in enumerate(("saliency", "occlusion")):
        share = np.stack([on_object_share(m[j], masks) for m in maps])   # (models, images)
        ok = ~np.isnan(share).any(0)  # a map with no mass says nothing about where
        key = f"attribution:{name}"
        shares[name] = AttributionShares(on_object=boot.mean(key, share[:, ok]),
                                         object_area=boot.mean(key, area[:, ok]),
                                         ratio=boot.ratio(key, share[:, ok], area[:, ok]))
    folder = out / "attribution"
    folder.mkdir()
    (folder / "maps.npz").write_bytes(npz_bytes(dict(  # no timestamps: the same bytes each run
        image_ids=data.image_ids[:n], labels=data.labels[:n], preds=preds, images=pics,
        masks=masks, saliency=sal.astype(np.float32), occlusion=occ.astype(np.float32)),
        compress=True))
    examples = _save_examples(data.image_ids, data.labels, preds, pics, masks, sal, occ, out)
    return AttributionResult(images=n, patch=exp.evaluate.occlusion_patch, split="test",
                             maps="attribution/maps.npz", examples=examples, **shares)


def _attribution_maps(model, pics: np.ndarray, patch: int,
                      progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """Saliency and occlusion maps of the images, in chunks (the progress bar's steps)."""
    from tqdm import tqdm

    from .attribution import occlusion, saliency

    fill = pics.reshape(-1, 3).mean(0) / 255  # one neutral colour for every image
    sal, occ = [], []
    with tqdm(total=len(pics), unit="img", desc="attribution", disable=not progress) as bar:
        for i in range(0, len(pics), ATTRIBUTION_CHUNK):
            sal.append(saliency(model, pics[i:i + ATTRIBUTION_CHUNK]))
            occ.append(occlusion(model, pics[i:i + ATTRIBUTION_CHUNK], patch, fill))
            bar.update(len(sal[-1]))
    return np.concatenate(sal), np.concatenate(occ)


def _save_examples(image_ids, labels, preds, pics, masks, sal, occ,
                   out: Path) -> list[AttributionExample]:
    """The first EXAMPLES images as pictures: image, mask, and each map as a heat picture."""
    from PIL import Image

    from ..report.figures import heat

    examples = []
    for i in range(min(EXAMPLES, len(pics))):
        files = {"image": pics[i], "mask": masks[i].astype(np.uint8) * 255,
                 "saliency": heat(sal[i]), "occlusion": heat(occ[i])}
        paths = {}
        for kind, pixels in files.items():
            path = out / "attribution" / f"example-{i:02d}-{kind}.png"
            Image.fromarray(pixels).save(path)
            paths[kind] = str(path.relative_to(out))
        examples.append(AttributionExample(image_id=str(image_ids[i]), label=int(labels[i]),
                                           pred=int(preds[i]), **paths))
    return examples


# --- outputs -------------------------------------------------------------------------------------

def _write_results(results: Results, exp: Experiment, params_text: str, out: Path) -> Results:
    """The page (index.html) and its figures (figures/*.png), then results.json naming them."""
    from ..report.figures import Pictures
    from ..report.page import trace_page

    pictures = Pictures(extras=True)
    (out / "index.html").write_text(trace_page(results, exp, params_text, out, None, None,
                                               pictures))
    (out / "figures").mkdir()
    for name, png in pictures.png.items():
        (out / "figures" / f"{name}.png").write_bytes(png)
    files = results.files.model_copy(update={"figures": {
        name: f"figures/{name}.png" for name in pictures.png}})
    results = results.model_copy(update={"files": files})
    (out / "results.json").write_text(results.to_json())
    return results


def headline_metrics(results: Results) -> dict:
    """The numbers `dvc metrics` compares across experiments, nested (dvc and MLflow flatten
    them with dots), the headline first (reliance, IID and worst-group accuracy: the first
    columns of `dvc exp show`), each estimate followed by its interval (name_low, name_high).
    Undefined numbers are left out."""
    m: dict = {"reliance": {k: v for r in results.reliance
                            for k, v in r.reliance.metrics(r.factor).items()},
               "iid": results.iid.accuracy.metrics("accuracy")}
    if results.worst_group:
        m["worst_group"] = {w.factor: {**w.accuracy.metrics("accuracy"),
                                       **w.average.metrics("average")}
                            for w in results.worst_group}
    for name, kind in PROBE_KINDS.items():
        m.update(kind.metrics(results.of(name)))
    att = results.attribution
    if att:
        m["attribution"] = {
            f"{name}_{part}": getattr(getattr(att, name), part).value
            for name in ("saliency", "occlusion") for part in ("on_object", "object_area")
            if getattr(getattr(att, name), part).value is not None}
    m["models"] = len(results.models)
    return {k: v for k, v in m.items() if v}


def flatten(d: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _write_plots(plots: Path, results: Results) -> None:
    """Plot data for `dvc plots`: each probe kind's (one JSON table per sweep, named in words),
    and the test confusion matrix: a row per cell (a class never decided still has its column),
    with each class's place in the label order (the template draws the classes in that order,
    not alphabetically). The folder is replaced as a whole, so a probe no longer made leaves no
    file behind."""
    with replaced_dir(plots) as tmp:
        for name, kind in PROBE_KINDS.items():
            if kind.plots is not None:
                kind.plots(results.of(name), tmp)
        _sweep_plots_in_words(tmp / "sweeps", results)
        cm = np.asarray(results.iid.confusion)
        classes = np.asarray(results.classes)
        true, chosen = np.indices(cm.shape).reshape(2, -1)
        pd.DataFrame({"actual": classes[true], "predicted": classes[chosen],
                      "count": cm[true, chosen], "actual_order": true,
                      "predicted_order": chosen}).to_csv(tmp / "confusion.csv", index=False)


def _sweep_plots_in_words(folder: Path, results: Results) -> None:
    """Each sweep's plot rows (sweeps/<key>.json, written by the sweep kind) get the factor's
    name and the level as the trace report writes them: the plot's title and x axis in words,
    not a file name and raw values."""
    import json

    from ..report import words as say

    sweeps = results.of("sweep") if folder.is_dir() else {}
    for key, sweep in sweeps.items():
        path = folder / f"{key}.json"
        rows = json.loads(path.read_text())
        for row in rows:
            row["factor"] = say.title(sweep.factor)
            row["level_text"] = say.level(sweep.factor, str(row["level"]))
        path.write_text(json.dumps(rows, indent=1))


# --- MLflow --------------------------------------------------------------------------------------

def _log_to_mlflow(exp: Experiment, headline: dict, out: Path, training_run: str | None,
                   model_id: str | None) -> None:
    """Into the active (evaluation) run: the parameters it ran with, the flattened metrics
    (linked to the champion's logged model), the figures, results.json and the page. Onto the
    training run above it, the headline cue metrics beside its parameters, so that MLflow's
    compare and parallel-coordinates views put a setting next to a cue."""
    import mlflow
    from mlflow.entities import Metric

    from .. import tracking

    metrics = flatten(headline)
    with tracking.mlflow_errors("logging the evaluation"):
        mlflow.log_params(tracking.flatten(exp.model_dump(mode="json")))
        mlflow.log_metrics(metrics, model_id=model_id)
        mlflow.set_tag("reliance_definition", RELIANCE_DEFINITION)
        mlflow.log_artifacts(str(out / "figures"), "figures")
        mlflow.log_artifact(str(out / "results.json"))
        mlflow.log_artifact(str(out / "index.html"))
        if training_run is not None:
            mlflow.MlflowClient().log_batch(training_run, metrics=[
                Metric(f"cue.{key}", value, int(time.time() * 1000), 0)
                for key, value in metrics.items() if key.split(".")[0] in HEADLINE_ON_TRAINING])


HEADLINE_ON_TRAINING = ("iid", "worst_group", "reliance")


def champion_model_id(models_dir: str | Path) -> str | None:
    """The MLflow model id of the replicate the training marked @champion, when known."""
    from .. import tracking

    link = tracking.read_run_link(models_dir) or {}
    champion = link.get("champion")
    for folder in Path(models_dir).glob("replicate-*"):
        own = tracking.read_run_link(folder) or {}
        if champion is not None and own.get("model_version") == champion:
            return own.get("model_id")
    return None
