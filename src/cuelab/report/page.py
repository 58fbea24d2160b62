"""The page: verdict first, the ranking, then the evidence factor by factor (each probe kind's
section), the IID accuracy, attribution, and the experiment that produced it. Both the trace
report (`cuelab report`) and the evaluation's summary (reports/evaluation/index.html, the
Kubeflow HTML output) are this page.

One self-contained HTML document: the style is inline, every picture a `data:` URI, no script
and no link to anything outside the file, so it opens offline and survives being mailed. The page
is a pure function of its inputs: the same results give the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..config import Experiment
from ..probes import PROBE_KINDS
from ..probes.base import Fragility
from ..results import AttributionResult, RelianceEntry, Results
from . import sentences as say
from . import words
from .figures import (Pictures, confusion_figure, example_tiles, examples_figure, figure_png,
                      pixels_png, png_uri)
from .markup import PageContext, anchor, esc, figure, key_values, numbers, prose

EXAMPLES_EACH = 4   # attribution examples: this many correct and this many mistaken


# --- the whole page ----------------------------------------------------------------------------

def trace_page(results: Results, exp: Experiment, params_text: str, evaluation_dir: Path,
               validation: dict | None, train: dict | None,
               pictures: Pictures | None = None) -> str:
    """The page. `pictures` collects every picture it draws, by name (default: a new one)."""
    probes = probes_by_factor(results)
    ranked = [r.factor for r in results.reliance]
    order = ranked + [f for f in probes if f not in ranked]
    correlated = correlations(exp)
    page = PageContext(results.classes, exp.label.factor, order, pictures or Pictures())
    sections = [factor_section(f, i + 1 if f in ranked else None, results, exp, probes,
                               correlated, page) for i, f in enumerate(order)]
    contents = "".join(
        f'<li><a href="#{anchor(f)}">{esc(words.title(f))}</a></li>' for f in order)
    body = "\n".join([
        verdict(results, exp, probes, correlated),
        f'<nav><b>Contents</b><ol><li><a href="#ranking">Reliance</a></li>'
        '<li><a href="#robustness">Robustness</a></li>'
        f'{contents}'
        '<li><a href="#iid">IID and worst-group accuracy</a></li>'
        '<li><a href="#attribution">Attribution</a>'
        '</li><li><a href="#experiment">The experiment</a></li>'
        '<li><a href="#reading">How to read this page</a></li></ol></nav>',
        ranking_section(results, correlated),
        robustness_section(results),
        *sections,
        iid_section(results, page),
        attribution_section(results, evaluation_dir, page),
        experiment_section(results, exp, params_text, validation, train),
        reading_section(results),
    ])
    return PAGE.format(title=esc(f"cuelab trace report: {results.experiment}"), body=body)


def probes_by_factor(results: Results) -> dict[str, list[tuple[str, str]]]:
    """Each probed factor's probes, as (kind, key), in the order of the probe kinds."""
    probes: dict[str, list[tuple[str, str]]] = {}
    for name, kind in PROBE_KINDS.items():
        for key, result in results.of(name).items():
            for f in kind.factors(result):
                probes.setdefault(f, []).append((name, key))
    return probes


def correlations(exp: Experiment) -> dict[str, float]:
    """The shortcuts planted in training: factor -> rho."""
    return {f: spec.correlation.rho for f, spec in exp.factors.items()
            if spec.correlation is not None and spec.correlation.rho > 0}


def tags(factor: str, exp: Experiment, correlated: dict[str, float]) -> str:
    out = []
    if factor == exp.label.factor:
        out.append("the label")
    if factor in correlated:
        out.append(say.shortcut_note(correlated[factor]))
    return "".join(f'<span class="tag">{esc(t)}</span>' for t in out)


# --- the verdict ---------------------------------------------------------------------------------

def verdict(results: Results, exp: Experiment, probes: dict, correlated: dict) -> str:
    items = "".join(
        f'<li><a class="factor" href="#{anchor(f)}">{esc(words.title(f))}</a>'
        f"{tags(f, exp, correlated)}"
        f"<p>{prose(text)}</p></li>"
        for f, text, _ in say.findings(results, exp.label.factor))
    if not items:
        items = ("<li><p>No probed factor moves more than "
                 f"{words.pct(words.NOTABLE)} of the model's decisions.</p></li>")
    warnings = say.unprobed_warnings(correlated, set(probes))
    notes = "".join(f'<p class="warning">{prose(w)}</p>' for w in warnings)
    model = results.model.get("architecture")
    boot = results.bootstrap
    models = len(results.models)
    not_cues = ", ".join(words.name(f) for f in results.not_cues)
    no_cue_note = (f" {not_cues[:1].upper()}{not_cues[1:]} indicate{'s' if len(results.not_cues) == 1 else ''} no class in "
                   "training: the model has no reason to rely on "
                   f"{'it' if len(results.not_cues) == 1 else 'them'}; how they move its "
                   "decisions is under each factor and under Robustness." if not_cues else "")
    return f"""<header>
<p class="kicker">cuelab trace report · experiment <b>{esc(results.experiment)}</b> ·
classes {esc(', '.join(results.classes))}{' · model ' + esc(model) if model else ''}</p>
<h1>What does the model rely on?</h1>
<p class="lede">{esc(say.lede(results))}</p>
</header>
<section class="verdict" id="verdict"><ul class="findings">{items}</ul>{notes}
<p class="iid">{prose(say.iid_sentence(results.iid, results.classes))} Probe images draw every
other factor independently of the class, so a model that leans on a shortcut is less accurate
on them than on the test split.{esc(no_cue_note)} Every number is the mean of {models} trained
model{'s' if models > 1 else ''} (the same data, other training seeds) with a {boot.confidence:.0%}
hierarchical bootstrap interval ({boot.resamples} resamples of the models, then of the probe
scenes); it does not cover another draw of the training data (vary the experiment's seed for
that).</p></section>"""


# --- the ranking ---------------------------------------------------------------------------------

def ranking_section(results: Results, correlated: dict) -> str:
    if not results.reliance:
        return ('<section id="ranking"><h2>Reliance</h2><p class="missing">No factor has a '
                "measurable reliance: no probe varies a factor that indicates a class in "
                "training.</p></section>")
    rows = "".join(_ranking_row(r, correlated) for r in results.reliance)
    return f"""<section id="ranking"><h2>Reliance <small>what the model uses, inside the
training distribution</small></h2>
<p>Factors that indicate a class in training, ordered by the share of the model's decisions
that follow them beyond what the decisions would be without them (the bar; the line across it
is the interval, the dots each trained model). 0 means no reliance; only images inside the
training distribution count.</p>
<table class="ranking"><thead><tr><th>#</th><th>factor</th><th class="barcol">reliance</th>
<th></th><th>measured by</th></tr></thead><tbody>{rows}</tbody></table></section>"""


def _ranking_row(r: RelianceEntry, correlated: dict) -> str:
    e = r.reliance
    clip = lambda x: max(0.0, min(1.0, x))  # noqa: E731
    v, lo, hi = (clip(x if x is not None else e.value) for x in (e.value, e.low, e.high))
    dots = "".join(f'<span class="dot" style="left:{clip(m) * 100:.1f}%"></span>'
                   for m in e.per_model if m is not None) if len(e.per_model) > 1 else ""
    bar = (f'<div class="bar"><span class="fill" style="width:{v * 100:.1f}%"></span>'
           f'<span class="whisker" style="left:{lo * 100:.1f}%;width:{(hi - lo) * 100:.1f}%">'
           f"</span>{dots}</div>")
    shortcut = f" ρ = {correlated[r.factor]:g} in training" if r.factor in correlated else ""
    return (f"<tr><td class='num'>{r.rank}</td>"
            f"<td><a href='#{anchor(r.factor)}'>{esc(words.title(r.factor))}</a>"
            f"<small>{esc(shortcut)}</small></td><td>{bar}</td>"
            f"<td class='num'>{numbers(words.estimate(e))}</td>"
            f"<td>{esc(r.top.label)}<small> · {esc(r.top.detail)}</small></td></tr>")


def robustness_section(results: Results) -> str:
    if not results.robustness:
        return ('<section id="robustness"><h2>Robustness</h2><p class="missing">No probe leaves '
                "the training distribution.</p></section>")
    clear = [r for r in results.robustness if r.drop.excludes_zero]
    unclear = [r for r in results.robustness if not r.drop.excludes_zero]
    head = ("<thead><tr><th>condition</th><th>why it is unseen</th><th>accuracy inside</th>"
            "<th>at the condition</th><th>drop</th></tr></thead>")
    table = lambda rows: (f'<table class="numbers robustness">{head}<tbody>'  # noqa: E731
                          + "".join(_robustness_row(r) for r in rows) + "</tbody></table>")
    shown = (table(clear) if clear else "<p>No unseen condition changes the accuracy clearly "
             "(every drop's interval includes 0).</p>")
    rest = (f"<details><summary>{len(unclear)} more unseen condition"
            f"{'s' if len(unclear) > 1 else ''} whose drop could be chance</summary>"
            f"{table(unclear)}</details>" if unclear else "")
    return f"""<section id="robustness"><h2>Robustness <small>how it fails on what it never
saw</small></h2>
<p>Probe conditions no training image had, the largest accuracy drop first: the accuracy of
the same base scenes inside the training distribution, then at the unseen condition. These say
how the model fails outside what it learned from, not what it relies on.</p>
{shown}{rest}</section>"""


def _robustness_row(r: Fragility) -> str:
    return (f"<tr><td><a href='#{anchor(r.factor)}'>{esc(r.condition)}</a></td>"
            f"<td><small>{esc(r.why)}</small></td>"
            f"<td class='num'>{numbers(words.estimate(r.baseline))}</td>"
            f"<td class='num'>{numbers(words.estimate(r.accuracy))}</td>"
            f"<td class='num'>{numbers(words.estimate(r.drop))}</td></tr>")


# --- one section per factor ----------------------------------------------------------------------

def factor_section(factor: str, rank: int | None, results: Results, exp: Experiment,
                   probes: dict, correlated: dict, page: PageContext) -> str:
    entry = next((r for r in results.reliance if r.factor == factor), None)
    head = f"{rank}. {words.title(factor)}" if rank else words.title(factor)
    if entry:
        summary = (f"<p class='importance'>Reliance {numbers(words.estimate(entry.reliance))} "
                   f"of the decisions ({esc(entry.top.label)}, {esc(entry.top.detail)}).</p>")
    elif factor in results.not_cues:
        summary = ("<p class='importance'>No reliance to measure: in training it indicates no "
                   "class. Its probes say how sensitive and how robust the model is to it.</p>")
    else:
        summary = "<p class='missing'>No defined reliance: none of its probes gave a number.</p>"
    parts = [PROBE_KINDS[kind].section(factor, key, results.of(kind)[key], page)
             for kind, key in probes.get(factor, [])]
    return (f'<section class="factor" id="{anchor(factor)}"><h2>{esc(head)}'
            f"{tags(factor, exp, correlated)}</h2>{summary}{''.join(parts)}</section>")


# --- IID, attribution ---------------------------------------------------------------------------

def iid_section(results: Results, page: PageContext) -> str:
    iid = results.iid
    recall = "".join(f"<tr><td>{esc(c)}</td><td class='num'>{words.pct(r)}</td></tr>"
                     for c, r in iid.class_accuracy.items())
    uri = page.pictures.uri("confusion", lambda: confusion_figure(iid.confusion, page.classes))
    worst = "".join(f"<li>{esc(words.title(w.factor))}: {prose(say.worst_group_sentence(w))}</li>"
                    for w in results.worst_group)
    worst = (f"<h3>Worst-group accuracy</h3><p>On test images drawn with every factor independent "
             f"of the class (the balanced test split), by factor paired with the classes in "
             f"training; the worst group is chosen again in every resample, so its interval "
             f"carries that choice:</p><ul>{worst}</ul>" if worst else
             "<p class='note'>No worst-group accuracy: the experiment has no balanced test split "
             "(splits.test_balanced).</p>")
    return f"""<section id="iid"><h2>IID and worst-group accuracy</h2>
<p>{prose(say.iid_sentence(iid, results.classes))}</p>{worst}
<div class="side">{figure(uri, "confusion matrix")}
<table class="numbers"><thead><tr><th>class</th><th>accuracy</th></tr></thead>
<tbody>{recall}</tbody></table></div></section>"""


def attribution_section(results: Results, evaluation_dir: Path, page: PageContext) -> str:
    att = results.attribution
    if att is None:
        return ('<section id="attribution"><h2>Attribution</h2><p class="missing">No attribution '
                "was measured (evaluate.attribution_images is 0).</p></section>")
    sentences = "".join(f"<li>{prose(say.attribution_sentence(m, getattr(att, m)))}</li>"
                        for m in ("saliency", "occlusion"))
    return f"""<section id="attribution"><h2>Attribution</h2>
<p>Where in the picture the decision comes from, on {att.images} {esc(att.split)} images,
against the exact object mask (occlusion patch {att.patch} px):</p><ul>{sentences}</ul>
{attribution_examples(att, evaluation_dir, page)}</section>"""


def attribution_examples(att: AttributionResult, evaluation_dir: Path, page: PageContext) -> str:
    """Examples as four tiles each: from maps.npz (the first few correct and the first few
    mistaken decisions), else the example pictures the evaluation saved."""
    maps = evaluation_dir / att.maps
    if att.maps and maps.is_file():
        cards, tiles, captions = _cards_from_maps(load_maps(maps), page.classes)
        if tiles:
            page.pictures.extra("attribution",
                                lambda: figure_png(examples_figure(tiles, captions)))
    else:
        cards = _cards_from_pictures(att, evaluation_dir, page.classes)
    if not cards:
        return "<p class='missing'>The attribution maps and example pictures are missing.</p>"
    return ("<p class='note'>Each row: the test image; its exact object mask (green outline); "
            "gradient saliency; occlusion sensitivity (each map scaled to its own maximum, over "
            "the dimmed image). Correct decisions first, then mistakes.</p>"
            f"<div class='examples'>{''.join(cards)}</div>")


def _cards_from_maps(data: dict[str, np.ndarray], classes: list[str]
                     ) -> tuple[list[str], list[dict[str, np.ndarray]], list[str]]:
    """The cards of the first few correct and mistaken decisions, their tiles and captions."""
    right = np.flatnonzero(data["labels"] == data["preds"])[:EXAMPLES_EACH]
    wrong = np.flatnonzero(data["labels"] != data["preds"])[:EXAMPLES_EACH]
    cards, every_tile, captions = [], [], []
    for i in [*right, *wrong]:
        tiles = example_tiles(data["images"][i], data["masks"][i], data["saliency"][i],
                              data["occlusion"][i])
        shares = {k: _share(data[k][i], data["masks"][i]) for k in ("saliency", "occlusion")}
        cards.append(_card(str(data["image_ids"][i]), int(data["labels"][i]),
                           int(data["preds"][i]), classes,
                           {k: png_uri(pixels_png(t)) for k, t in tiles.items()}, shares))
        every_tile.append(tiles)
        captions.append(f"{data['image_ids'][i]}\ntrue {classes[int(data['labels'][i])]}, "
                        f"chose {classes[int(data['preds'][i])]}")
    return cards, every_tile, captions


def _cards_from_pictures(att: AttributionResult, evaluation_dir: Path,
                         classes: list[str]) -> list[str]:
    cards = []
    for e in att.examples:
        paths = {k: evaluation_dir / getattr(e, k) for k in ("image", "mask", "saliency",
                                                             "occlusion")}
        if all(p.is_file() for p in paths.values()):
            tiles = {k: png_uri(p.read_bytes()) for k, p in paths.items()}
            cards.append(_card(e.image_id, e.label, e.pred, classes, tiles, {}))
    return cards


def load_maps(path: Path) -> dict[str, np.ndarray]:
    """maps.npz, without unpickling anything (image ids are stored as a unicode array), checked
    at the door: a truncated or foreign file, or one without the arrays the examples show, is a
    `CuelabError` naming it."""
    from ..errors import CuelabError
    from ..inputs import read_npz

    again = "run `cuelab evaluate` again"
    maps = read_npz(path, "attribution maps", again)
    missing = [k for k in MAPS if k not in maps]
    n = len(maps.get("image_ids", ()))
    wrong = [k for k in MAPS if k in maps and (maps[k].ndim == 0 or len(maps[k]) != n)]
    if missing or wrong:
        problem = (f"no {', '.join(missing)}" if missing else
                   f"not one of each per image: {', '.join(wrong)}")
        raise CuelabError(f"{path}: not attribution maps: {problem}; {again}")
    return maps


MAPS = ("image_ids", "labels", "preds", "images", "masks", "saliency", "occlusion")


def _share(m: np.ndarray, mask: np.ndarray) -> float | None:
    total = float(m.sum())
    return float(m[mask.astype(bool)].sum()) / total if total > 0 else None


def _card(image_id: str, label: int, pred: int, classes: list[str], tiles: dict,
          shares: dict) -> str:
    ok = label == pred
    verdict = (f"<span class='ok'>✓ {esc(classes[pred])}</span>" if ok else
               f"<span class='bad'>✗ chose {esc(classes[pred])}</span>")
    on = " · ".join(f"{k} {words.pct(v)} on object" for k, v in shares.items() if v is not None)
    imgs = "".join(f'<img alt="{esc(k)} of {esc(image_id)}" title="{esc(k)}" src="{u}">'
                   for k, u in tiles.items())
    names = "".join(f"<span>{esc(k)}</span>" for k in tiles)
    return (f"<div class='card'><div class='tiles'>{imgs}</div><div class='names'>{names}</div>"
            f"<p>true <b>{esc(classes[label])}"
            f"</b> {verdict}<br><small>{esc(image_id)}{' · ' + esc(on) if on else ''}</small>"
            "</p></div>")


# --- the experiment ------------------------------------------------------------------------------

def experiment_section(results: Results, exp: Experiment, params_text: str,
                       validation: dict | None, train: dict | None) -> str:
    training = (key_values({k: esc(_plain(v)) for k, v in train.items()}) if train else
                "<p class='missing'>No training summary found.</p>")
    return f"""<section id="experiment"><h2>The experiment</h2>
<h3>Data</h3>{key_values(_dataset_rows(exp, validation))}
<h3>Model</h3>{key_values(_model_rows(results))}
<h3>Training</h3>{training}
<h3>MLflow</h3>{_runs(results)}
<h3>params.yaml</h3><pre>{esc(params_text)}</pre></section>"""


def _dataset_rows(exp: Experiment, validation: dict | None) -> dict[str, str]:
    s = exp.splits
    probes = [line for kind in PROBE_KINDS.values() for line in kind.describe(exp)]
    rows = {
        "experiment": esc(f"{exp.name} (seed {exp.seed})"),
        "label": esc(f"{exp.label.factor}: {', '.join(exp.classes)}"),
        "splits": esc(f"train {s.train} · val {s.val} · test {s.test} · balanced val "
                      f"{s.val_balanced} · balanced test {s.test_balanced}"),
        "probes": "<br>".join(esc(p) for p in probes) or "none",
        "rendering": esc(f"{exp.render.resolution} px, {exp.render.samples} samples "
                         f"({exp.render.engine})"),
    }
    if validation is None:
        rows["validation"] = "<span class='missing'>no validation summary found</span>"
        return rows
    passed = validation.get("passed")
    rows["validation"] = esc(
        f"{'passed' if passed else 'FAILED' if passed is False else '?'}: "
        f"{validation.get('expectations', '?')} expectations, "
        f"{validation.get('failed', '?')} failed, {validation.get('images', '?')} images")
    for f in validation.get("failures", [])[:5]:
        rows["validation"] += "<br>" + esc(f"failed: {f.get('table')}: "
                                           f"{f.get('description') or f.get('expectation')}")
    return rows


def _model_rows(results: Results) -> dict[str, str]:
    model = dict(results.model)
    settings = model.pop("train", None)
    rows = {k: esc(model[k]) for k in (
        "architecture", "width", "input_size", "num_classes", "dataset_version",
        "models_dir") if model.get(k) is not None}
    rows["replicates"] = "<br>".join(
        esc(f"replicate {m.get('replicate', i)}: seed {m.get('seed')}, epoch {m.get('best_epoch')} "
            f"kept ({m.get('select_on', 'val')} accuracy {_plain(m.get('best_val_accuracy'))})")
        for i, m in enumerate(results.models))
    if settings:
        rows["training settings"] = f"<code>{esc(json.dumps(settings))}</code>"
    return rows


def _runs(results: Results) -> str:
    """Where the runs are, not their ids: the page is the same for the same data, and run ids
    differ from run to run (they are in the mlflow-run.json beside the model and the
    evaluation)."""
    runs = {"MLflow experiment": esc(results.experiment),
            "run ids": "<code>models/mlflow-run.json</code> (training; each replicate's run "
                       "in <code>models/replicate-*/mlflow-run.json</code>, nested under it), "
                       "<code>reports/evaluation/mlflow-run.json</code> (evaluation)"}
    if results.model.get("registered_model"):
        runs["registered model"] = f"<code>{esc(results.model['registered_model'])}</code>"
    return key_values(runs)


def _plain(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def reading_section(results: Results) -> str:
    b = results.bootstrap
    glossary = [term for kind in PROBE_KINDS.values() for term in kind.glossary]
    glossary += [
        ("Probe accuracy", "Sweep, conflict and protocol images draw every factor but the\n"
         "probed ones independently of the class, so the shortcuts of training do not help "
         "there: a model\nthat leans on them is less accurate on every probe than on the test "
         "split, at every level."),
        ("On-object attribution", "The share of an attribution map's mass inside the exact "
         "object\nmask, against the share of the image the object covers."),
        ("Reliance", esc(results.reliance_definition)),
        ("Robustness", esc(results.robustness_definition)),
        ("Intervals", f"{b.confidence:.0%} hierarchical percentile bootstrap, {b.resamples} "
         "resamples: the trained\nmodels with replacement, then the independent units (images, "
         "or base scenes for paired probes),\nthe same units for every model. Never narrower "
         "than the spread of the models' own values. It\ncovers training seeds and probe "
         "scenes, not another draw of the training data. A verdict is\nstated only when the "
         "interval lies on one side of the line; wide intervals are flagged."),
    ]
    terms = "\n".join(f"<dt>{term}</dt><dd>{text}</dd>" for term, text in glossary)
    return f"""<section id="reading"><h2>How to read this page</h2><dl>
{terms}
</dl></section>"""


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
:root {{ --ink:#1f2430; --muted:#6b7280; --line:#e3e6ea; --accent:#2f6db5; --warm:#d9822b;
        --paper:#fbfbfa; }}
* {{ box-sizing:border-box; }}
body {{ margin:0; background:var(--paper); color:var(--ink);
       font:16px/1.55 "Inter","Segoe UI","Helvetica Neue","Liberation Sans",Arial,sans-serif; }}
main {{ max-width:1000px; margin:0 auto; padding:40px 32px 80px; }}
h1 {{ font-size:34px; line-height:1.2; margin:6px 0 12px; letter-spacing:-0.01em; }}
h2 {{ font-size:23px; margin:0 0 10px; padding-top:8px; }}
h3 {{ font-size:17px; margin:26px 0 6px; }}
h2 small, h3 small {{ font-weight:normal; color:var(--muted); font-size:14px; margin-left:6px; }}
section {{ margin-top:44px; padding-top:10px; border-top:1px solid var(--line); }}
a {{ color:var(--accent); text-decoration:none; }}
a:hover {{ text-decoration:underline; }}
.kicker {{ color:var(--muted); font-size:14px; margin:0; }}
.lede {{ font-size:19px; margin:0 0 8px; }}
.verdict {{ border:none; background:#fff; border-left:4px solid var(--accent);
           padding:6px 26px 14px; box-shadow:0 1px 3px rgba(0,0,0,.06); margin-top:18px; }}
.findings {{ list-style:none; padding-left:0; margin:14px 0; }}
.findings li {{ margin:14px 0; }}
.findings .factor {{ font-weight:700; font-size:18px; color:var(--ink); }}
.findings p {{ margin:2px 0 0; font-size:17px; }}
.tag {{ display:inline-block; font-size:12px; color:var(--muted); border:1px solid var(--line);
       border-radius:10px; padding:0 8px; margin-left:8px; vertical-align:middle;
       font-weight:normal; }}
.ci {{ color:var(--muted); white-space:nowrap; }}
.warning {{ background:#fff6e8; border-left:3px solid var(--warm); padding:6px 12px; }}
.iid {{ color:var(--muted); font-size:14px; }}
.missing {{ color:var(--muted); font-style:italic; }}
.note {{ color:var(--muted); font-size:14px; }}
.importance {{ margin-top:0; color:var(--muted); }}
nav {{ margin-top:26px; font-size:14px; }}
nav ol {{ display:flex; flex-wrap:wrap; gap:4px 18px; padding:0; margin:6px 0 0;
         list-style:none; }}
table {{ border-collapse:collapse; font-size:14px; margin:8px 0; }}
th, td {{ text-align:left; padding:5px 12px 5px 0; border-bottom:1px solid var(--line);
         vertical-align:top; }}
th {{ font-weight:600; color:var(--muted); }}
td small {{ color:var(--muted); }}
.num {{ text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }}
.ranking {{ width:100%; }}
.ranking td {{ vertical-align:middle; }}
.barcol {{ width:30%; }}
.bar {{ position:relative; height:12px; background:#eef0f3; border-radius:2px; }}
.bar .fill {{ position:absolute; left:0; top:0; bottom:0; background:var(--accent);
             border-radius:2px; opacity:.85; }}
.bar .whisker {{ position:absolute; top:5px; height:2px; background:var(--ink); }}
.bar .dot {{ position:absolute; top:3px; width:6px; height:6px; margin-left:-3px;
            border-radius:50%; background:#fff; border:1px solid var(--ink); }}
.kv {{ min-width:60%; }}
.kv th {{ width:180px; }}
.side figure img {{ max-width:380px; }}
.kv code, pre {{ font:13px/1.45 "DejaVu Sans Mono",Menlo,Consolas,monospace; }}
.kv code {{ word-break:break-all; }}
pre {{ background:#f3f4f6; padding:14px 16px; overflow-x:auto; border-radius:4px; }}
figure {{ margin:12px 0; }}
figure img {{ max-width:100%; display:block; }}
figcaption {{ color:var(--muted); font-size:13px; max-width:720px; }}
details {{ margin:4px 0 8px; font-size:14px; }}
summary {{ cursor:pointer; color:var(--accent); }}
.side {{ display:flex; gap:32px; align-items:flex-start; flex-wrap:wrap; }}
.examples {{ display:grid; grid-template-columns:1fr 1fr; gap:18px 28px; }}
.card .tiles {{ display:flex; gap:4px; }}
.card img {{ width:25%; min-width:0; image-rendering:pixelated; border-radius:2px; }}
.card p {{ margin:2px 0 0; font-size:14px; }}
.card .names {{ display:flex; gap:4px; font-size:11px; color:var(--muted); }}
.card .names span {{ width:25%; text-align:center; }}
.ok {{ color:#2e7d4f; }}
.bad {{ color:#b3412e; font-weight:600; }}
dt {{ font-weight:600; margin-top:10px; }}
dd {{ margin:2px 0 0 0; color:#3b4150; }}
</style></head>
<body><main>
{body}
</main></body></html>
"""
