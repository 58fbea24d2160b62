"""Plain words from the numbers of results.json.

Every sentence of the trace report is built here from an estimate ({value, low, high, n}), never
written by hand, and says how sure it is: a verdict only when the interval is on one side of the
line, "no clear ..." when it straddles it, a warning when the interval is wide or the data thin.
The functions return plain text; the page escapes it.
"""

from __future__ import annotations

from ..factors import REGISTRY

WIDE = 0.30            # an interval wider than this (in shares) is called wide
FEW_DECISIONS = 20     # conflict images decided for either cue: fewer and we do not judge
NOTABLE = 0.05         # a factor that moves fewer decisions than this barely matters
HEADLINE_FACTORS = 4   # at most this many findings in the verdict

# How the page names a factor, where its registry name is not plain English.
NAMES = {"color": "colour", "iso": "ISO noise", "jpeg_quality": "JPEG quality",
         "jpeg_subsampling": "JPEG chroma subsampling", "blur_sigma": "defocus blur",
         "lens_k1": "lens distortion k1", "lens_k2": "lens distortion k2",
         "lens_p1": "lens tilt p1", "lens_p2": "lens tilt p2",
         "position_x": "horizontal position", "position_y": "vertical position",
         "white_balance": "white balance", "resample_scale": "resampling scale",
         "resample_method": "resampling method", "demosaic": "demosaicing"}
UNITS = {"deg": "°", "x": "×", "px": " px", "K": " K", "mm": " mm"}


# --- names and numbers -----------------------------------------------------------------------

def name(factor: str) -> str:
    return NAMES.get(factor, factor.replace("_", " "))


def title(factor: str) -> str:
    """The factor's name at the start of a sentence: "Colour", "JPEG quality"."""
    text = name(factor)
    return text[:1].upper() + text[1:]


def level(factor: str, value: str) -> str:
    """A sweep level as a person reads it: "40°", "0 (no JPEG, lossless)"."""
    f = REGISTRY.get(factor)
    if f is None or f.is_categorical:
        return value
    text = value + UNITS.get(f.unit, "")
    note = f.notes.get(value)
    if note:  # notes may hold parentheses themselves: keep one level of them
        text += f" ({note.replace(' (', ', ').replace(')', '')})"
    return text


def pct(x: float | None) -> str:
    if x is None:
        return "–"
    text = f"{abs(x) * 100:.0f}"
    return ("−" if x < 0 and text != "0" else "") + text + "%"


def interval(e: dict) -> str:
    """'[83–91%]'; '[−3% to 7%]' when an end is negative (a dash would read as a minus)."""
    lo, hi = e.get("low"), e.get("high")
    if lo is None or hi is None:
        return "(no interval)"
    if lo < 0 or hi < 0:
        return f"[{pct(lo)} to {pct(hi)}]"
    return f"[{pct(lo)[:-1]}–{pct(hi)}]"


def estimate(e: dict | None) -> str:
    """'87% [83–91%]'."""
    if e is None or e.get("value") is None:
        return "undefined"
    return f"{pct(e['value'])} {interval(e)}"


def defined(e: dict | None) -> bool:
    return e is not None and e.get("value") is not None


def wide(e: dict) -> bool:
    return e.get("low") is None or e.get("high") is None or e["high"] - e["low"] > WIDE


def width_caveat(e: dict, units: str) -> str:
    """A clause for a wide interval, naming how little data it rests on."""
    if not defined(e) or not wide(e):
        return ""
    return f" (a wide interval: only {e['n']} {units}; treat it as a hint)"


def direction(e: dict | None) -> str:
    """How sure a difference is: 'up' or 'down' when its interval excludes zero, 'none' when it
    includes zero and is small, 'unclear' when it includes zero but could be large, 'undefined'
    without a number."""
    if not defined(e):
        return "undefined"
    if e["low"] is not None and e["low"] > 0:
        return "up"
    if e["high"] is not None and e["high"] < 0:
        return "down"
    return "none" if abs(e["value"]) < NOTABLE else "unclear"


def complement(e: dict) -> dict:
    """1 - e: the preference for b from the preference for a."""
    flip = lambda x: None if x is None else 1 - x  # noqa: E731
    return {**e, "value": flip(e["value"]), "low": flip(e["high"]), "high": flip(e["low"])}


# --- one sentence per probe ---------------------------------------------------------------------

def conflict_sentence(conflict: dict, factor: str | None = None) -> str:
    """Which cue the model follows on images where two cues disagree, from `factor`'s side
    (default: the conflict's first factor)."""
    a, b = conflict["factors"]
    kind = f"{name(a)}-vs-{name(b)} conflict images"
    preference = conflict["preference"]
    if factor == b:
        a, b, preference = b, a, complement(preference)
    images = conflict["images"]
    if images == 0:
        return f"no {kind} were made, so nothing can be said about {name(a)} against {name(b)}"
    share_other = conflict["share_other"]["value"] or 0.0
    decided = round((1 - share_other) * images)
    if not defined(preference):
        return (f"none of the {images} {kind} was decided for the class either cue indicates: "
                "the preference is undefined")
    if decided < FEW_DECISIONS:
        return (f"too few {kind} to tell: only {decided} of {images} were decided for the class "
                f"of either cue ({name(a)} won {pct(preference['value'])} of those)")
    p = estimate(preference)
    if preference["low"] is not None and preference["low"] > 0.5:
        text = f"the model follows {name(a)} over {name(b)} in {p} of {kind}"
    elif preference["high"] is not None and preference["high"] < 0.5:
        text = (f"the model follows {name(b)} over {name(a)} in "
                f"{estimate(complement(preference))} of {kind}")
    else:
        text = (f"no clear preference between {name(a)} and {name(b)}: the model follows "
                f"{name(a)} in {p} of {kind}, an interval that includes 50%")
    if share_other > NOTABLE:
        text += (f" (counting the {decided} of {images} images decided for either cue; "
                 f"{pct(share_other)} went to a class neither cue indicates)")
    return text + width_caveat(preference, "images")


def _reference(sweep: dict) -> str:
    refs = set(sweep["reference"].values())
    if len(refs) == 1:
        return level(sweep["factor"], refs.pop())
    return "the level paired with the image's class in training"


def sweep_sentence(sweep: dict, label_factor: str | None = None) -> str:
    """How much changing one factor moves the decisions (flip rate) and the accuracy."""
    f = sweep["factor"]
    flip, worst = sweep["max_flip_rate"], sweep["max_flip_rate_level"]
    n = sweep["base_scenes"]
    ref = _reference(sweep)
    if not defined(flip):
        text = f"the flip rate of the {name(f)} sweep is undefined ({n} base scenes)"
    elif flip["high"] is not None and flip["high"] < NOTABLE:
        text = (f"predictions barely move when {name(f)} changes: at most {estimate(flip)} of "
                f"{n} base scenes change their decision between {ref} and {level(f, worst)}")
    else:
        text = (f"predictions change in {estimate(flip)} of {n} base scenes when {name(f)} "
                f"goes from {ref} to {level(f, worst)}")
    text += width_caveat(flip, "base scenes")

    drop, at = sweep["max_accuracy_drop"], sweep["max_accuracy_drop_level"]
    lowest = pct(dict(zip(sweep["levels"], sweep["accuracy"]))[at]["value"])
    reference = pct(sweep["reference_accuracy"]["value"])
    values = [a["value"] for a in sweep["accuracy"] if a["value"] is not None]
    how = direction(drop)
    if how == "up":
        text += (f"; accuracy falls from {reference} at the reference to {lowest} at "
                 f"{level(f, at)} (a drop of {estimate(drop)})")
    elif how == "unclear":
        text += (f"; accuracy goes from {reference} at the reference to {lowest} at "
                 f"{level(f, at)}, but that drop of {estimate(drop)} could be chance")
    elif how == "down":
        text += f"; accuracy is higher at every level than at the reference ({reference})"
    elif how == "none" and pct(min(values)) == pct(max(values)):
        text += f"; accuracy is {pct(min(values))} at every level"
    elif how == "none":
        text += (f"; accuracy stays between {pct(min(values))} and {pct(max(values))} across "
                 "the levels")
    if f == label_factor:
        text += f" ({name(f)} is the label: a model that reads it should flip)"
    return text


def background_sentence(background: dict) -> str:
    """The background gap (Mixed-Same vs Mixed-Rand) and the Only-FG drop, in words."""
    acc = background["accuracy"]
    parts = []
    gap = background.get("gap")
    how = direction(gap)
    if how != "undefined":
        same, rand = pct(acc["mixed_same"]["value"]), pct(acc["mixed_rand"]["value"])
        swap = "when the background is drawn for a random class instead of the object's own"
        parts.append({
            "up": f"accuracy falls from {same} to {rand} {swap} (gap {estimate(gap)})",
            "down": f"accuracy rises from {same} to {rand} {swap} (gap {estimate(gap)}): "
                    "backgrounds of the object's own class do not help it",
            "none": f"accuracy barely changes {swap} ({same} against {rand}; gap "
                    f"{estimate(gap)}): no sign the model reads the background",
            "unclear": f"accuracy goes from {same} to {rand} {swap}, but that gap of "
                       f"{estimate(gap)} could be chance",
        }[how] + width_caveat(gap, "base scenes"))
    else:
        parts.append("the protocol lacks mixed_same or mixed_rand, so there is no background "
                     "gap")
    drop = background.get("only_fg_drop")
    how = direction(drop)
    if how != "undefined":
        original, only_fg = pct(acc["original"]["value"]), pct(acc["only_fg"]["value"])
        parts.append("with the object alone on a blank background (Only-FG) accuracy " + {
            "up": f"falls from {original} to {only_fg} (a drop of {estimate(drop)})",
            "down": f"rises from {original} to {only_fg} (a drop of {estimate(drop)})",
            "none": f"stays about the same ({original} against {only_fg})",
            "unclear": f"goes from {original} to {only_fg}, a drop of {estimate(drop)} that "
                       "could be chance",
        }[how])
    return "; ".join(parts)


def attribution_sentence(method: str, result: dict) -> str:
    """Where a map puts its mass, against the object's share of the picture."""
    on, area, ratio = result["on_object"], result["object_area"], result["ratio"]
    what = {"saliency": "gradient saliency", "occlusion": "occlusion sensitivity"}.get(method,
                                                                                      method)
    if not defined(on):
        return f"{what}: no map had any mass, so it says nothing about where the model looks"
    text = (f"{pct(on['value'])} {interval(on)} of the {what} falls on the object, which covers "
            f"{pct(area['value'])} of the image")
    if defined(ratio) and ratio["low"] is not None and ratio["high"] is not None:
        times = f"{ratio['value']:.1f}× [{ratio['low']:.1f}–{ratio['high']:.1f}] its share"
        if ratio["low"] > 1:
            text += f": {times}, so the map concentrates on the object"
        elif ratio["high"] < 1:
            text += f": {times}, so the map sits mostly off the object"
        else:
            text += f": {times}, no more than its share: the map does not single out the object"
    return text


def iid_sentence(iid: dict, classes: list[str]) -> str:
    acc = iid["accuracy"]
    text = (f"on test images drawn like the training images the model is right in "
            f"{estimate(acc)} of {acc['n']} images{width_caveat(acc, 'images')}")
    recalls = {c: r for c, r in iid["class_accuracy"].items() if r is not None}
    if len(recalls) > 1:
        worst = min(recalls, key=recalls.get)
        if recalls[worst] < max(recalls.values()):
            text += f"; its weakest class is {worst} ({pct(recalls[worst])})"
    return text


# --- the verdict ---------------------------------------------------------------------------------

def evidence_key(factor: str, evidence: dict, results: dict) -> str | None:
    """Which probe of results an importance evidence entry comes from: 'sweep:F',
    'conflict:A_vs_B' or 'background'."""
    if evidence["probe"] == "sweep":
        return f"sweep:{factor}"
    if evidence["probe"] == "conflict":
        for key, c in results["conflicts"].items():
            a, b = c["factors"]
            if factor in (a, b) and evidence["detail"] == \
                    f"{factor} against {b if factor == a else a}":
                return f"conflict:{key}"
        return None
    if evidence["probe"] == "background protocol":
        return "background"
    return None


def probe_sentence(key: str, factor: str, results: dict, label_factor: str | None) -> str:
    kind, _, which = key.partition(":")
    if kind == "sweep":
        return sweep_sentence(results["sweeps"][which], label_factor)
    if kind == "conflict":
        return conflict_sentence(results["conflicts"][which], factor)
    return background_sentence(results["background"])


def winner(conflict: dict) -> str | None:
    """The cue the model clearly prefers in a conflict (interval above 50%), if any."""
    a, b = conflict["factors"]
    p = conflict["preference"]
    if p["low"] is not None and p["low"] > 0.5:
        return a
    if p["high"] is not None and p["high"] < 0.5:
        return b
    return None


def findings(results: dict, label_factor: str | None = None) -> list[tuple[str, str, dict]]:
    """The verdict: (factor, sentence, ranking entry) for the top factors that move at least
    NOTABLE of the decisions. Each is said with one probe not already said above it: a conflict
    it clearly wins, else the background protocol (the probe made for it), else its strongest
    evidence. A conflict speaks for both its factors, so it is said once, by its winner."""
    def won_by(key: str) -> str | None:
        kind, _, which = key.partition(":")
        return winner(results["conflicts"][which]) if kind == "conflict" else None

    said: set[str] = set()
    out = []
    for entry in results["importance"]:
        if len(out) == HEADLINE_FACTORS or entry["importance"] < NOTABLE:
            break
        factor = entry["factor"]
        keys = [k for ev in sorted(entry["evidence"], key=lambda e: -(e["value"] or 0))
                if (k := evidence_key(factor, ev, results)) is not None and k not in said
                and won_by(k) in (None, factor)]
        keys.sort(key=lambda k: (won_by(k) != factor, k != "background"))  # stable: by value
        if keys:
            said.add(keys[0])
            out.append((factor, probe_sentence(keys[0], factor, results, label_factor), entry))
    return out


def lede(results: dict) -> str:
    """One sentence over the whole ranking."""
    ranking = results["importance"]
    if not ranking:
        return ("No probe produced a measurable effect: the experiment has no sweeps, conflicts "
                "or background protocol with data.")
    strong = [r for r in ranking if r["importance"] >= NOTABLE]
    weak = [r for r in ranking if r["importance"] < NOTABLE]
    if not strong:
        return (f"None of the {len(ranking)} probed factors moves {pct(NOTABLE)} of the "
                "model's decisions or more.")
    listed = ", ".join(f"{name(r['factor'])} {pct(r['importance'])}" for r in strong)
    text = (f"Of the {len(ranking)} probed factors, {len(strong)} "
            f"move{'s' if len(strong) == 1 else ''} at least {pct(NOTABLE)} of the model's "
            f"decisions: {listed}.")
    if weak:
        others = ", ".join(name(r["factor"]) for r in weak)
        text += f" {others[:1].upper()}{others[1:]} move{'s' if len(weak) == 1 else ''} less."
    return text


def shortcut_note(rho: float) -> str:
    return f"paired with the class in training, ρ = {rho:g}"


def unprobed_warnings(correlated: dict[str, float], probed: set[str]) -> list[str]:
    """Shortcuts the experiment planted but never tested: the report cannot clear them."""
    return [f"{title(f)} was paired with the class in training (ρ = {rho:g}) but no sweep, "
            "conflict or protocol varies it: this report cannot say whether the model uses it."
            for f, rho in correlated.items() if f not in probed and rho > 0]
