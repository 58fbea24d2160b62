"""A one-page HTML summary of the evaluation (self-contained: figures inlined), for the Kubeflow
dashboard and for a quick look; the trace report is the full story."""

from __future__ import annotations

import base64
import html
from pathlib import Path


def _num(e: dict | None) -> str:
    if e is None or e.get("value") is None:
        return "–"
    lo, hi = e.get("low"), e.get("high")
    ci = f" <small>[{lo:.2f}, {hi:.2f}]</small>" if lo is not None and hi is not None else ""
    return f"{e['value']:.3f}{ci}"


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def summary_page(results: dict, root: Path) -> str:
    """results: the results dictionary (JSON form); root: the folder its file paths are in."""
    e = html.escape
    conf = results["bootstrap"]["confidence"]
    rows = "".join(
        f"<tr><td>{r['rank']}</td><td>{e(r['factor'])}</td>"
        f"<td>{_num({'value': r['importance'], 'low': r['low'], 'high': r['high']})}</td>"
        f"<td>{e(r['measure'])}, {e(r['detail'])}</td></tr>" for r in results["importance"])
    prefs = "".join(
        f"<tr><td>{e(c['factors'][0])} over {e(c['factors'][1])}</td>"
        f"<td>{_num(c['preference'])}</td><td>{c['images']}</td></tr>"
        for c in results["conflicts"].values())
    bg = results["background"]
    bg_rows = "" if bg is None else "".join(
        f"<tr><td>{e(v)}</td><td>{_num(a)}</td></tr>" for v, a in bg["accuracy"].items()
    ) + (f"<tr><td><b>gap</b> (mixed_same − mixed_rand)</td><td>{_num(bg['gap'])}</td></tr>"
         if "gap" in bg else "")
    att = results["attribution"]
    att_rows = "" if att is None else "".join(
        f"<tr><td>{m}</td><td>{_num(att[m]['on_object'])}</td>"
        f"<td>{_num(att[m]['object_area'])}</td></tr>" for m in ("saliency", "occlusion"))
    figures = "".join(f"<figure>{_img(root / p)}</figure>"
                      for p in results["files"]["figures"].values())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>cuelab evaluation: {e(results['experiment'])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:0.5em 0 1.5em}}td,th{{border-bottom:1px solid #ddd;
padding:3px 10px;text-align:left}}small{{color:#777}}img{{max-width:100%}}</style></head><body>
<h1>Which cues does the model use? <small>{e(results['experiment'])}</small></h1>
<p>IID test accuracy {_num(results['iid']['accuracy'])} on {results['iid']['accuracy']['n']}
images. Intervals: {conf:.0%} bootstrap, {results['bootstrap']['resamples']} resamples.</p>
<h2>Factor importance</h2>
<p>{e(results['importance_definition'])}</p>
<table><tr><th>#</th><th>factor</th><th>importance</th><th>from</th></tr>{rows}</table>
<h2>Cue preference</h2>
<table><tr><th>conflict</th><th>preference</th><th>images</th></tr>{prefs}</table>
<h2>Background protocol</h2><table><tr><th>variant</th><th>accuracy</th></tr>{bg_rows}</table>
<h2>On-object attribution</h2>
<table><tr><th>method</th><th>share inside the mask</th><th>mask's share of the image</th></tr>
{att_rows}</table>
<h2>Figures</h2>{figures}
</body></html>
"""
