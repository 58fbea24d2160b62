"""The trace report page: verdict first, the ranking, then the evidence factor by factor, the IID
accuracy, attribution, and the experiment that produced it.

One self-contained HTML document: the style is inline, every picture a `data:` URI, no script
and no link to anything outside the file, so it opens offline and survives being mailed.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np

from ..config import Experiment
from ..evaluate.figures import confusion_figure
from . import figures as draw
from . import sentences as say

EXAMPLES_EACH = 4   # attribution examples: this many correct and this many mistaken


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def prose(text: str) -> str:
    """A generated sentence as HTML: escaped, intervals set in a quieter colour, and made a
    sentence (capital first letter, full stop)."""
    text = text[:1].upper() + text[1:]
    return numbers(text if text.endswith(".") else text + ".")


def numbers(text: str) -> str:
    """Escaped text with its intervals ('[83–91%]') in a quieter colour."""
    return re.sub(r"\[[^\]]*%\]", lambda m: f'<span class="ci">{m.group()}</span>', esc(text))


def figure(uri: str, alt: str, caption: str = "") -> str:
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f'<figure><img alt="{esc(alt)}" src="{uri}">{cap}</figure>'


def key_values(rows: dict) -> str:
    body = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows.items())
    return f'<table class="kv">{body}</table>'


def anchor(factor: str) -> str:
    return "factor-" + re.sub(r"[^a-z0-9_-]", "-", factor.lower())


# --- the whole page ----------------------------------------------------------------------------

def trace_page(results: dict, exp: Experiment, params_text: str, evaluation_dir: Path,
               validation: dict | None, train: dict | None) -> str:
    probes = probes_by_factor(results, exp)
    ranked = [r["factor"] for r in results["importance"]]
    order = ranked + [f for f in probes if f not in ranked]
    correlated = correlations(exp)
    sections = [factor_section(f, i + 1 if f in ranked else None, results, exp, probes,
                               correlated, order) for i, f in enumerate(order)]
    contents = "".join(
        f'<li><a href="#{anchor(f)}">{esc(say.title(f))}</a></li>' for f in order)
    body = "\n".join([
        verdict(results, exp, probes, correlated),
        f'<nav><b>Contents</b><ol><li><a href="#ranking">Ranking</a></li>{contents}'
        '<li><a href="#iid">IID accuracy</a></li><li><a href="#attribution">Attribution</a>'
        '</li><li><a href="#experiment">The experiment</a></li>'
        '<li><a href="#reading">How to read this page</a></li></ol></nav>',
        ranking_section(results, correlated),
        *sections,
        iid_section(results),
        attribution_section(results, evaluation_dir),
        experiment_section(results, exp, params_text, validation, train),
        reading_section(results),
    ])
    return PAGE.format(title=esc(f"cuelab trace report: {results['experiment']}"), body=body)


def probes_by_factor(results: dict, exp: Experiment) -> dict[str, list[str]]:
    """Each probed factor's probe keys ('sweep:F', 'conflict:K', 'background')."""
    probes: dict[str, list[str]] = {}
    for f in results["sweeps"]:
        probes.setdefault(f, []).append(f"sweep:{f}")
    for key, c in results["conflicts"].items():
        for f in c["factors"]:
            probes.setdefault(f, []).append(f"conflict:{key}")
    if results["background"] is not None:
        probes.setdefault("background", []).append("background")
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

def verdict(results: dict, exp: Experiment, probes: dict, correlated: dict) -> str:
    items = "".join(
        f'<li><a class="factor" href="#{anchor(f)}">{esc(say.title(f))}</a>'
        f"{tags(f, exp, correlated)}"
        f"<p>{prose(text)}</p></li>"
        for f, text, _ in say.findings(results, exp.label.factor))
    if not items:
        items = ("<li><p>No probed factor moves more than "
                 f"{say.pct(say.NOTABLE)} of the model's decisions.</p></li>")
    warnings = say.unprobed_warnings(correlated, set(probes))
    notes = "".join(f'<p class="warning">{prose(w)}</p>' for w in warnings)
    iid = results["iid"]
    model = results["model"].get("architecture")
    return f"""<header>
<p class="kicker">cuelab trace report · experiment <b>{esc(results['experiment'])}</b> ·
classes {esc(', '.join(results['classes']))}{' · model ' + esc(model) if model else ''}</p>
<h1>What does the model rely on?</h1>
<p class="lede">{esc(say.lede(results))}</p>
</header>
<section class="verdict" id="verdict"><ul class="findings">{items}</ul>{notes}
<p class="iid">{prose(say.iid_sentence(iid, results['classes']))} Probe images draw every
other factor independently of the class, so a model that leans on a shortcut is less accurate
on them than on the test split. Intervals are {results['bootstrap']['confidence']:.0%} bootstrap
intervals ({results['bootstrap']['resamples']} resamples).</p></section>"""


# --- the ranking ---------------------------------------------------------------------------------

def ranking_section(results: dict, correlated: dict) -> str:
    if not results["importance"]:
        return ('<section id="ranking"><h2>Ranking</h2><p class="missing">No factor has a '
                "measurable importance: the experiment has no probe with data.</p></section>")
    rows = []
    for r in results["importance"]:
        v, lo, hi = (max(0.0, min(1.0, x if x is not None else r["importance"]))
                     for x in (r["importance"], r["low"], r["high"]))
        bar = (f'<div class="bar"><span class="fill" style="width:{v * 100:.1f}%"></span>'
               f'<span class="whisker" style="left:{lo * 100:.1f}%;width:{(hi - lo) * 100:.1f}%">'
               "</span></div>")
        shortcut = f" ρ = {correlated[r['factor']]:g} in training" \
            if r["factor"] in correlated else ""
        rows.append(
            f"<tr><td class='num'>{r['rank']}</td>"
            f"<td><a href='#{anchor(r['factor'])}'>{esc(say.title(r['factor']))}</a>"
            f"<small>{esc(shortcut)}</small></td><td>{bar}</td>"
            f"<td class='num'>{numbers(say.estimate(_importance(r)))}</td>"
            f"<td>{esc(r['measure'])}<small> · {esc(r['detail'])}</small></td></tr>")
    return f"""<section id="ranking"><h2>Ranking</h2>
<p>Factors ordered by their importance: the largest share of the model's decisions that changing
the factor moves, over all its probes (the bar; the line across it is the interval).</p>
<table class="ranking"><thead><tr><th>#</th><th>factor</th><th class="barcol">importance</th>
<th></th><th>set by</th></tr></thead><tbody>{''.join(rows)}</tbody></table></section>"""


def _importance(entry: dict) -> dict:
    return {"value": entry["importance"], "low": entry["low"], "high": entry["high"]}


# --- one section per factor ----------------------------------------------------------------------

def factor_section(factor: str, rank: int | None, results: dict, exp: Experiment,
                   probes: dict, correlated: dict, order: list[str]) -> str:
    entry = next((r for r in results["importance"] if r["factor"] == factor), None)
    head = f"{rank}. {say.title(factor)}" if rank else say.title(factor)
    summary = (f"<p class='importance'>Importance {numbers(say.estimate(_importance(entry)))} "
               f"of the decisions ({esc(entry['measure'])}, {esc(entry['detail'])}).</p>"
               if entry else "<p class='missing'>No defined importance: none of its probes "
                             "gave a number.</p>")
    parts = []
    for key in probes.get(factor, []):
        kind, _, which = key.partition(":")
        if kind == "sweep":
            parts.append(sweep_block(results["sweeps"][which], exp))
        elif kind == "conflict":
            c = results["conflicts"][which]
            owner = min(c["factors"], key=lambda f: order.index(f) if f in order else 1e9)
            parts.append(conflict_block(c, factor, results["classes"], owner))
        else:
            parts.append(background_block(results["background"]))
    return (f'<section class="factor" id="{anchor(factor)}"><h2>{esc(head)}'
            f"{tags(factor, exp, correlated)}</h2>{summary}{''.join(parts)}</section>")


def _estimate_cell(e: dict) -> str:
    return esc(say.estimate(e)) if say.defined(e) else "–"


def sweep_block(sweep: dict, exp: Experiment) -> str:
    f = sweep["factor"]
    rows = "".join(
        f"<tr><td>{esc(say.level(f, lv))}</td><td class='num'>{_estimate_cell(a)}</td>"
        f"<td class='num'>{'reference' if fl['value'] is None else _estimate_cell(fl)}</td>"
        "</tr>"
        for lv, a, fl in zip(sweep["levels"], sweep["accuracy"], sweep["flip_rate"]))
    refs = ", ".join(f"{c}: {say.level(f, lv)}" for c, lv in sweep["reference"].items())
    return f"""<h3>Sweep <small>{sweep['base_scenes']} base scenes × {len(sweep['levels'])}
levels, {esc(sweep['stage'])} factor</small></h3>
<p>{prose(say.sweep_sentence(sweep, exp.label.factor))}</p>
{figure(draw.data_uri(draw.sweep_figure(sweep)), f"sweep over {f}")}
<details><summary>The numbers</summary><table class="numbers"><thead><tr><th>{esc(say.name(f))}</th>
<th>accuracy</th><th>flip rate vs reference</th></tr></thead><tbody>{rows}</tbody></table>
<p class="note">Reference level per class: {esc(refs)}. Flip rate over all pairs of levels:
{esc(say.estimate(sweep['flip_rate_all_pairs']))}.</p></details>"""


def conflict_block(conflict: dict, factor: str, classes: list[str], owner: str) -> str:
    a, b = conflict["factors"]
    other = b if factor == a else a
    head = f"Conflict with {esc(say.name(other))} <small>{conflict['images']} images</small>"
    text = f"<p>{prose(say.conflict_sentence(conflict, factor))}</p>"
    if conflict["images"] == 0:
        return f"<h3>{head}</h3>{text}"
    if factor != owner:
        return (f"<h3>{head}</h3>{text}<p class='note'>The decision matrix is under "
                f"<a href='#{anchor(owner)}'>{esc(say.title(owner))}</a>.</p>")
    caption = (f"Each cell: images where {esc(say.name(a))} says the row's class and "
               f"{esc(say.name(b))} the column's; the colour and percentage are the decisions "
               f"for {esc(say.name(a))}'s class among those for either (n of them). "
               f"Preference for {esc(say.name(a))} overall: "
               f"{esc(say.estimate(conflict['preference']))}.")
    return (f"<h3>{head}</h3>{text}"
            + figure(draw.data_uri(draw.conflict_figure(conflict, classes)),
                     f"{a} vs {b} decision matrix", caption))


def background_block(background: dict) -> str:
    rows = "".join(f"<tr><td>{esc(v)}</td><td class='num'>{_estimate_cell(a)}</td></tr>"
                   for v, a in background["accuracy"].items())
    differences = (("gap", "gap (mixed_same − mixed_rand)"),
                   ("only_fg_drop", "Only-FG drop (original − only_fg)"))
    extra = "".join(f"<tr><td><b>{name}</b></td><td class='num'>"
                    f"{_estimate_cell(background[k])}</td></tr>"
                    for k, name in differences if k in background)
    return f"""<h3>Background protocol <small>{background['base_scenes']} base scenes ×
{len(background['variants'])} variants</small></h3>
<p>{prose(say.background_sentence(background))}</p>
{figure(draw.data_uri(draw.background_figure(background)), "background protocol")}
<details><summary>The numbers</summary><table class="numbers"><tbody>{rows}{extra}</tbody>
</table></details>"""


# --- IID, attribution ---------------------------------------------------------------------------

def iid_section(results: dict) -> str:
    iid = results["iid"]
    recall = "".join(f"<tr><td>{esc(c)}</td><td class='num'>{say.pct(r)}</td></tr>"
                     for c, r in iid["class_accuracy"].items())
    fig = confusion_figure(iid["confusion"], results["classes"])
    return f"""<section id="iid"><h2>IID accuracy</h2>
<p>{prose(say.iid_sentence(iid, results['classes']))}</p>
<div class="side">{figure(draw.data_uri(fig), "confusion matrix")}
<table class="numbers"><thead><tr><th>class</th><th>accuracy</th></tr></thead>
<tbody>{recall}</tbody></table></div></section>"""


def attribution_section(results: dict, evaluation_dir: Path) -> str:
    att = results["attribution"]
    if att is None:
        return ('<section id="attribution"><h2>Attribution</h2><p class="missing">No attribution '
                "was measured (evaluate.attribution_images is 0).</p></section>")
    sentences = "".join(f"<li>{prose(say.attribution_sentence(m, att[m]))}</li>"
                        for m in ("saliency", "occlusion") if m in att)
    return f"""<section id="attribution"><h2>Attribution</h2>
<p>Where in the picture the decision comes from, on {att['images']} {esc(att['split'])} images,
against the exact object mask (occlusion patch {att['patch']} px):</p><ul>{sentences}</ul>
{attribution_examples(att, results['classes'], evaluation_dir)}</section>"""


def attribution_examples(att: dict, classes: list[str], evaluation_dir: Path) -> str:
    """Examples as four tiles each: from maps.npz (the first few correct and the first few
    mistaken decisions), else the example pictures the evaluation saved."""
    maps = evaluation_dir / att.get("maps", "")
    cards = []
    if att.get("maps") and maps.is_file():
        data = load_maps(maps)
        right = np.flatnonzero(data["labels"] == data["preds"])[:EXAMPLES_EACH]
        wrong = np.flatnonzero(data["labels"] != data["preds"])[:EXAMPLES_EACH]
        for i in [*right, *wrong]:
            tiles = draw.example_tiles(data["images"][i], data["masks"][i],
                                       data["saliency"][i], data["occlusion"][i])
            shares = {k: _share(data[k][i], data["masks"][i]) for k in ("saliency", "occlusion")}
            cards.append(_card(str(data["image_ids"][i]), int(data["labels"][i]),
                               int(data["preds"][i]), classes, tiles, shares))
    else:
        for e in att.get("examples", []):
            paths = {k: evaluation_dir / e[k] for k in ("image", "mask", "saliency", "occlusion")}
            if all(p.is_file() for p in paths.values()):
                tiles = {k: draw.file_uri(p) for k, p in paths.items()}
                cards.append(_card(e["image_id"], e["label"], e["pred"], classes, tiles, {}))
    if not cards:
        return "<p class='missing'>The attribution maps and example pictures are missing.</p>"
    return ("<p class='note'>Each row: the test image; its exact object mask (green outline); "
            "gradient saliency; occlusion sensitivity (each map scaled to its own maximum, over "
            "the dimmed image). Correct decisions first, then mistakes.</p>"
            f"<div class='examples'>{''.join(cards)}</div>")


def load_maps(path: Path) -> dict[str, np.ndarray]:
    """maps.npz, without unpickling anything (image ids are stored as a unicode array)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _share(m: np.ndarray, mask: np.ndarray) -> float | None:
    total = float(m.sum())
    return float(m[mask.astype(bool)].sum()) / total if total > 0 else None


def _card(image_id: str, label: int, pred: int, classes: list[str], tiles: dict,
          shares: dict) -> str:
    ok = label == pred
    verdict = (f"<span class='ok'>✓ {esc(classes[pred])}</span>" if ok else
               f"<span class='bad'>✗ chose {esc(classes[pred])}</span>")
    on = " · ".join(f"{k} {say.pct(v)} on object" for k, v in shares.items() if v is not None)
    imgs = "".join(f'<img alt="{esc(k)} of {esc(image_id)}" title="{esc(k)}" src="{u}">'
                   for k, u in tiles.items())
    names = "".join(f"<span>{esc(k)}</span>" for k in tiles)
    return (f"<div class='card'><div class='tiles'>{imgs}</div><div class='names'>{names}</div>"
            f"<p>true <b>{esc(classes[label])}"
            f"</b> {verdict}<br><small>{esc(image_id)}{' · ' + esc(on) if on else ''}</small>"
            "</p></div>")


# --- the experiment ------------------------------------------------------------------------------

def experiment_section(results: dict, exp: Experiment, params_text: str,
                       validation: dict | None, train: dict | None) -> str:
    s = exp.splits
    probes = []
    for sw in exp.sweeps:
        probes.append(f"sweep {sw.factor}: {sw.base_scenes} base scenes × "
                      f"{len(exp.sweep_levels(sw))} levels")
    for c in exp.conflicts:
        probes.append(f"conflict {c.factors[0]} vs {c.factors[1]}: {c.images} images")
    if exp.background_protocol is not None:
        bp = exp.background_protocol
        probes.append(f"background protocol: {bp.base_scenes} base scenes × "
                      f"{', '.join(bp.variants)}")
    dataset = {
        "experiment": esc(f"{exp.name} (seed {exp.seed})"),
        "label": esc(f"{exp.label.factor}: {', '.join(exp.classes)}"),
        "splits": esc(f"train {s.train} · val {s.val} · test {s.test}"),
        "probes": "<br>".join(esc(p) for p in probes) or "none",
        "rendering": esc(f"{exp.render.resolution} px, {exp.render.samples} samples "
                         f"({exp.render.engine})"),
    }
    if validation is None:
        dataset["validation"] = "<span class='missing'>no validation summary found</span>"
    else:
        passed = validation.get("passed")
        dataset["validation"] = esc(
            f"{'passed' if passed else 'FAILED' if passed is False else '?'}: "
            f"{validation.get('expectations', '?')} expectations, "
            f"{validation.get('failed', '?')} failed, {validation.get('images', '?')} images")
        for f in validation.get("failures", [])[:5]:
            dataset["validation"] += "<br>" + esc(f"failed: {f.get('table')}: "
                                                  f"{f.get('description') or f.get('expectation')}")

    model = dict(results["model"])
    settings = model.pop("train", None)
    model_rows = {k: esc(model[k]) for k in (
        "architecture", "width", "input_size", "num_classes", "best_epoch", "dataset_version",
        "registered_model", "model_version", "models_dir") if model.get(k) is not None}
    if settings:
        model_rows["training settings"] = f"<code>{esc(json.dumps(settings))}</code>"
    training = (key_values({k: esc(_plain(v)) for k, v in train.items()}) if train else
                "<p class='missing'>No training summary found.</p>")

    tracking = results.get("tracking")
    runs = {}
    training_run = model.get("run_id") or (tracking or {}).get("parent_run_id")
    if training_run:
        runs["training run"] = f"<code>{esc(training_run)}</code>"
    if tracking:
        runs["evaluation run"] = f"<code>{esc(tracking['run_id'])}</code>"
        runs["experiment id"] = esc(tracking["experiment_id"])
        runs["tracking store"] = f"<code>{esc(tracking['tracking_uri'])}</code>"
    elif model.get("tracking_uri"):
        runs["tracking store"] = f"<code>{esc(model['tracking_uri'])}</code>"
    mlflow = key_values(runs) if runs else \
        "<p class='missing'>No MLflow run recorded for this evaluation.</p>"
    return f"""<section id="experiment"><h2>The experiment</h2>
<h3>Data</h3>{key_values(dataset)}
<h3>Model</h3>{key_values(model_rows)}
<h3>Training</h3>{training}
<h3>MLflow</h3>{mlflow}
<h3>params.yaml</h3><pre>{esc(params_text)}</pre></section>"""


def _plain(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def reading_section(results: dict) -> str:
    b = results["bootstrap"]
    return f"""<section id="reading"><h2>How to read this page</h2><dl>
<dt>Flip rate</dt><dd>On paired counterfactuals (the same base scene, only one factor changed),
the share of base scenes whose decision at a level differs from their decision at the reference
level: the level the class typically had in training.</dd>
<dt>Cue preference</dt><dd>On conflict images, where one factor indicates one class and another
factor a different class: the share of decisions for the first factor's class among the
decisions for either.</dd>
<dt>Background gap</dt><dd>Accuracy with backgrounds drawn for the object's own class
(Mixed-Same) minus accuracy with backgrounds drawn for a random class (Mixed-Rand), as in the
ImageNet-9 backgrounds challenge.</dd>
<dt>Probe accuracy</dt><dd>Sweep, conflict and protocol images draw every factor but the
probed ones independently of the class, so the shortcuts of training do not help there: a model
that leans on them is less accurate on every probe than on the test split, at every level.</dd>
<dt>On-object attribution</dt><dd>The share of an attribution map's mass inside the exact object
mask, against the share of the image the object covers.</dd>
<dt>Importance</dt><dd>{esc(results.get('importance_definition', ''))}</dd>
<dt>Intervals</dt><dd>{b['confidence']:.0%} percentile bootstrap over the independent units
(images, or base scenes for paired probes), {b['resamples']} resamples. A verdict is stated
only when the interval lies on one side of the line; wide intervals are flagged.</dd>
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
