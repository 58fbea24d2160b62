"""The sentences of the page that belong to no probe kind: IID accuracy, attribution, the verdict
(which probe to say for each top factor), the lede over the ranking, and the warnings about
shortcuts no probe tested. Every sentence is built from the numbers of results.json, never
written by hand (the pieces are in `words`, each kind's own sentence in its module)."""

from __future__ import annotations

from ..probes import PROBE_KINDS
from ..probes.base import ProbeRef
from ..results import AttributionShares, IIDResult, RelianceEntry, Results, WorstGroup
from .words import NOTABLE, defined, estimate, interval, name, pct, title, width_caveat

HEADLINE_FACTORS = 4   # at most this many findings in the verdict


def attribution_sentence(method: str, result: AttributionShares) -> str:
    """Where a map puts its mass, against the object's share of the picture."""
    on, area, ratio = result.on_object, result.object_area, result.ratio
    what = {"saliency": "gradient saliency", "occlusion": "occlusion sensitivity"}.get(method,
                                                                                      method)
    if not defined(on):
        return f"{what}: no map had any mass, so it says nothing about where the model looks"
    text = (f"{pct(on.value)} {interval(on)} of the {what} falls on the object, which covers "
            f"{pct(area.value)} of the image")
    if defined(ratio) and ratio.low is not None and ratio.high is not None:
        times = f"{ratio.value:.1f}× [{ratio.low:.1f}–{ratio.high:.1f}] its share"
        if ratio.low > 1:
            text += f": {times}, so the map concentrates on the object"
        elif ratio.high < 1:
            text += f": {times}, so the map sits mostly off the object"
        else:
            text += f": {times}, no more than its share: the map does not single out the object"
    return text


def iid_sentence(iid: IIDResult, classes: list[str]) -> str:
    acc = iid.accuracy
    text = (f"on test images drawn like the training images the model is right in "
            f"{estimate(acc)} of {acc.n} images{width_caveat(acc, 'images')}")
    recalls = {c: r for c, r in iid.class_accuracy.items() if r is not None}
    if len(recalls) > 1:
        worst = min(recalls, key=recalls.get)
        if recalls[worst] < max(recalls.values()):
            text += f"; its weakest class is {worst} ({pct(recalls[worst])})"
    return text


# --- the verdict ---------------------------------------------------------------------------------

def probe_sentence(results: Results, ref: ProbeRef, factor: str,
                   label_factor: str | None) -> str:
    """The finding of the probe `ref` points at, from `factor`'s side."""
    return PROBE_KINDS[ref.kind].sentence(results.result(ref), factor, label_factor)


def _said_with(entry: RelianceEntry, results: Results, said: set) -> ProbeRef | None:
    """The probe to say a factor with: the one its reliance is measured by, unless said above
    it; else by the claim its kind makes for the factor (a conflict it clearly wins, then the
    probe made for it, then the rest), the strongest evidence first within each; none that
    speaks for another factor."""
    if entry.set_by.probe not in said:  # the measure the reliance is
        return entry.set_by
    candidates = []
    for ev in sorted(entry.evidence, key=lambda e: -(e.estimate.value or 0)):
        if ev.ref.probe in said:
            continue
        claim = PROBE_KINDS[ev.ref.kind].claim(results.result(ev.ref), entry.factor)
        if claim is not None:
            candidates.append((claim, ev.ref))
    candidates.sort(key=lambda c: c[0])  # stable: by value within a claim
    return candidates[0][1] if candidates else None


def relied_on(entry: RelianceEntry) -> bool:
    """Clear reliance: the interval is above zero and the value at least NOTABLE."""
    e = entry.reliance
    return e.low is not None and e.low > 0 and e.value >= NOTABLE


def findings(results: Results, label_factor: str | None = None
             ) -> list[tuple[str, str, RelianceEntry]]:
    """The verdict: (factor, sentence, ranking entry) for the top factors the model clearly
    relies on, each said with one probe not already said above it."""
    said: set[tuple[str, str]] = set()
    out = []
    for entry in results.reliance:
        if len(out) == HEADLINE_FACTORS:
            break
        if not relied_on(entry):
            continue
        ref = _said_with(entry, results, said)
        if ref is not None:
            said.add(ref.probe)
            out.append((entry.factor, probe_sentence(results, ref, entry.factor, label_factor),
                        entry))
    return out


def lede(results: Results) -> str:
    """One sentence over the reliance ranking, one over robustness."""
    ranking = results.reliance
    models = len(results.models)
    across = f"across {models} trained model{'s' if models > 1 else ''}"
    if not ranking:
        text = ("No probe measured reliance: the experiment has no sweep, conflict or background "
                "protocol over a factor that indicates a class in training.")
    else:
        strong = [r for r in ranking if relied_on(r)]
        weak = [r for r in ranking if not relied_on(r)]
        if not strong:
            text = (f"The model shows no clear reliance on any of the {len(ranking)} factors "
                    f"that indicate a class in training ({across}).")
        else:
            listed = ", ".join(f"{name(r.factor)} {pct(r.reliance.value)}" for r in strong)
            text = (f"Of the {len(ranking)} factors that indicate a class in training, the model "
                    f"clearly relies on {len(strong)} ({across}): {listed} of its decisions "
                    "follow them.")
            if weak:
                others = ", ".join(name(r.factor) for r in weak)
                text += (f" No clear reliance on {others}.")
    if results.robustness:
        worst = results.robustness[0]
        text += (f" Outside the training distribution accuracy falls most at "
                 f"{worst.condition} (by {pct(worst.drop.value)}).")
    return text


def worst_group_sentence(w: WorstGroup) -> str:
    return (f"grouping the balanced test images by class and by the class {name(w.factor)} "
            f"indicates ({w.groups} groups, the smallest of {w.smallest} images), the worst "
            f"group is right in {estimate(w.accuracy)} (at the point estimate: {w.group}), the "
            f"average group in {estimate(w.average)}")


def shortcut_note(rho: float) -> str:
    return f"paired with the class in training, ρ = {rho:g}"


def unprobed_warnings(correlated: dict[str, float], probed: set[str]) -> list[str]:
    """Shortcuts the experiment planted but never tested: the report cannot clear them."""
    return [f"{title(f)} was paired with the class in training (ρ = {rho:g}) but no sweep, "
            "conflict or protocol varies it: this report cannot say whether the model uses it."
            for f, rho in correlated.items() if f not in probed and rho > 0]
