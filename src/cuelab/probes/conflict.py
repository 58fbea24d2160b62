"""Cue conflicts (Geirhos): images where factor a indicates one class and factor b another.

Every other factor that indicates a class in training is held so that it favours neither class
(the sampler's `cues` column says how). The preference for a is the share of decisions for a's
class among the decisions for a's or b's class; every decision is also counted by what each cue
said; the reliance on each cue is its conflict excess; each balanced cue's pull says how much of
the decisions it, not the two in conflict, decided. Intervals resample models, then images.
Everything about the kind is here: its result, statistics, reliance evidence, metrics, and its
part of the page.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from ..config import Experiment
from ..report import words as say
from ..report.figures import CUE_A, CUE_B, INK, MUTED, NEITHER, style
from ..report.markup import PageContext, anchor, esc, estimate_cell, figure, prose
from ..scenes import conflict_key, indicates
from .base import EVIDENCE, WON, Evidence, ProbeKind, ProbeRef, by_model
from .estimate import Bootstrap, Estimate, Strict, total


class ConflictResult(Strict):
    factors: tuple[str, str]            # (a, b)
    images: int
    models: int
    held: dict[str, str]                # every other cue: "neutral" or "balanced"
    preference: Estimate                # decisions for a's class / decisions for a's or b's
    share_a: Estimate                   # shares of all decisions: a's class,
    share_b: Estimate                   # b's class,
    share_other: Estimate               # neither
    excess_a: Estimate | None           # reliance on a: see `excess`
    excess_b: Estimate | None
    third_cue_share: Estimate           # decisions for a class that only a third cue indicates
    third_cue_chance: float             # ... what a model choosing at random would give
    pulls: dict[str, Estimate]          # each balanced cue: the decisions it moves (see `pull`)
    decisions: list[list[list[int]]]    # counts[class a said][class b said][class chosen], all
    preference_matrix: list[list[float | None]]  # models: the preference per (a's, b's class)


# --- statistics ----------------------------------------------------------------------------------

def _held(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """What each held cue says in each image, from the `cues` column: "none", "a" or "b"."""
    parts = [dict(p.split("=") for p in text.split(";") if p) for text in rows.cues.fillna("")]
    names = list(parts[0]) if parts else []
    return {g: np.array([p.get(g, "") for p in parts]) for g in names}


def _third_classes(rows: pd.DataFrame, exp: Experiment, cues: list[str], class_a: np.ndarray,
                   class_b: np.ndarray) -> np.ndarray:
    """(images, classes): the classes some held cue's value indicates, other than a's and
    b's (read from the values themselves, not from what the `cues` column says)."""
    k = len(exp.classes)
    out = np.zeros((len(rows), k), bool)
    for g in cues:
        values = rows[g].to_numpy(dtype=object)
        for c in range(k):
            out[:, c] |= indicates(exp, g, values, np.full(len(rows), c))
    out[np.arange(len(rows)), class_a] = out[np.arange(len(rows)), class_b] = False
    return out


def excess(pred: np.ndarray, mine: np.ndarray, theirs: np.ndarray, k: int) -> np.ndarray:
    """Per model and image: [decision for my class] minus [decision for neither class] / (k-2),
    the share any one class that no cue indicates gets. 0 in expectation for a model that does
    not use my cue; used on images where the balanced cues favour the other class."""
    other = (pred != mine) & (pred != theirs)
    return (pred == mine) - other / (k - 2)


def cue_preference(table: pd.DataFrame, exp: Experiment, a: str, b: str,
                   boot: Bootstrap) -> ConflictResult:
    """On conflict images where cue a says class_a and cue b says class_b: the preference for a
    (decisions for class_a among those for class_a or class_b), the share of decisions each cue
    wins, the reliance on each cue (`excess`), what the held cues did (`third_cue_share`,
    `pulls`), and every decision counted by what each cue said. Intervals resample models,
    then images."""
    key, k = conflict_key(a, b), len(exp.classes)
    rows = table[(table.split == "conflict") & (table.conflict == key)]
    first = rows[rows.replicate == rows.replicate.min()].sort_values("image_id")
    class_a, class_b = first.class_a.to_numpy(np.int64), first.class_b.to_numpy(np.int64)
    pred = by_model(rows, "image_id", None, "pred").astype(np.int64)   # (models, images)
    models, n = pred.shape
    follows_a, follows_b = (pred == class_a).astype(float), (pred == class_b).astype(float)
    held = _held(first)
    third = _third_classes(first, exp, list(held), class_a, class_b)
    flat = pred.ravel()
    counts = np.bincount((np.tile(class_a * k + class_b, models)) * k + flat,
                         minlength=k ** 3).reshape(k, k, k)
    ia, ib = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    won_a, won_b = counts[ia, ib, ia], counts[ia, ib, ib]
    with np.errstate(invalid="ignore"):
        cell = np.where(ia == ib, np.nan, won_a / (won_a + won_b))
    name = f"conflict:{key}"
    balanced = {g: side for g, side in held.items() if (side != "none").all()}
    excesses = {}
    for side, mine, theirs in (("a", class_a, class_b), ("b", class_b, class_a)):
        against = np.ones(n, bool)  # images where every balanced cue favours the other class
        for s in balanced.values():
            against &= s != side
        excesses[side] = (boot.mean(f"{name}:excess_{side}",
                                    excess(pred, mine, theirs, k)[:, against])
                          if k > 2 and against.any() else None)
    return ConflictResult(
        factors=(a, b), images=n, models=models,
        held={g: "balanced" if g in balanced else "neutral" for g in held},
        preference=boot.ratio(name, follows_a, follows_a + follows_b),
        share_a=boot.mean(name, follows_a), share_b=boot.mean(name, follows_b),
        share_other=boot.mean(name, 1 - follows_a - follows_b),
        excess_a=excesses["a"], excess_b=excesses["b"],
        third_cue_share=boot.mean(name, third[np.arange(n), pred]),
        third_cue_chance=round(float(third.sum(1).mean() / k), 6),
        pulls={g: pull(pred, class_a, class_b, side == "a", boot, f"{name}:pull:{g}")
               for g, side in balanced.items()},
        decisions=counts.tolist(),
        preference_matrix=[[None if np.isnan(x) else float(x) for x in r] for r in cell])


def pull(pred: np.ndarray, class_a: np.ndarray, class_b: np.ndarray, to_a: np.ndarray,
         boot: Bootstrap, key: str) -> Estimate:
    """The decisions a balanced cue moves between the two classes: half of
    [P(a's class | cue says a) - P(a's class | cue says b)] + [P(b's | says b) - P(b's | says a)].
    0 for a model that ignores the cue; 1 for one that follows it alone."""
    y = (pred == class_a).astype(float) - (pred == class_b)   # (models, images)
    on_a, on_b = to_a.astype(float), (~to_a).astype(float)
    return boot.estimate(key, len(to_a), len(pred), lambda w: (
        total(w, y * on_a) / (w @ on_a)[:, None] - total(w, y * on_b) / (w @ on_b)[:, None]) / 2)


def statistics(table: pd.DataFrame, exp: Experiment,
               boot: Bootstrap) -> dict[str, ConflictResult]:
    return {conflict_key(*c.factors): cue_preference(table, exp, *c.factors, boot)
            for c in exp.conflicts}


# --- what the rest of cuelab takes from a conflict -----------------------------------------------

def reliance(key: str, c: ConflictResult) -> list[tuple[str, Evidence]]:
    """For each factor, the share of decisions for its class beyond a class no cue indicates,
    on the images where the balanced cues favour the other class."""
    a, b = c.factors
    return [(f, Evidence(ref=ProbeRef(kind="conflict", key=key, measure=measure),
                         label="conflict excess", detail=f"{f} against {other}",
                         estimate=getattr(c, measure)))
            for f, other, measure in ((a, b, "excess_a"), (b, a, "excess_b"))
            if getattr(c, measure) is not None]


def metrics(conflicts: dict[str, ConflictResult]) -> dict[str, dict]:
    out = {}
    for key, c in conflicts.items():
        numbers = {**c.preference.metrics("preference"),
                   **c.third_cue_share.metrics("third_cue_share"),
                   "third_cue_chance": c.third_cue_chance}
        for side in ("a", "b"):
            if (e := getattr(c, f"excess_{side}")) is not None:
                numbers |= e.metrics(f"excess_{c.factors[0 if side == 'a' else 1]}")
        for g, e in c.pulls.items():
            numbers |= e.metrics(f"pull_{g}")
        out[key] = numbers
    return {"conflict": out}


def winner(conflict: ConflictResult) -> str | None:
    """The cue the model clearly prefers (interval above 50%), if any."""
    a, b = conflict.factors
    p = conflict.preference
    if p.low is not None and p.low > 0.5:
        return a
    if p.high is not None and p.high < 0.5:
        return b
    return None


def claim(conflict: ConflictResult, factor: str) -> int | None:
    """A conflict speaks for both its factors, so the verdict says it once, by its winner."""
    won = winner(conflict)
    return EVIDENCE if won is None else WON if won == factor else None


# --- in words and pictures -----------------------------------------------------------------------

def sentence(conflict: ConflictResult, factor: str | None = None,
             label_factor: str | None = None) -> str:
    """Which cue the model follows on images where two cues disagree, from `factor`'s side
    (default: the conflict's first factor)."""
    a, b = conflict.factors
    kind = f"{say.name(a)}-vs-{say.name(b)} conflict images"
    preference = conflict.preference
    if factor == b:
        a, b, preference = b, a, say.complement(preference)
    images = conflict.images
    if images == 0:
        return (f"no {kind} were made, so nothing can be said about {say.name(a)} against "
                f"{say.name(b)}")
    share_other = conflict.share_other.value or 0.0
    decided = round((1 - share_other) * images)
    if not say.defined(preference):
        return (f"none of the {images} {kind} was decided for the class either cue indicates: "
                "the preference is undefined")
    if decided < say.FEW_DECISIONS:
        return (f"too few {kind} to tell: only {decided} of {images} were decided for the class "
                f"of either cue ({say.name(a)} won {say.pct(preference.value)} of those)")
    p = say.estimate(preference)
    if preference.low is not None and preference.low > 0.5:
        text = f"the model follows {say.name(a)} over {say.name(b)} in {p} of {kind}"
    elif preference.high is not None and preference.high < 0.5:
        text = (f"the model follows {say.name(b)} over {say.name(a)} in "
                f"{say.estimate(say.complement(preference))} of {kind}")
    else:
        text = (f"no clear preference between {say.name(a)} and {say.name(b)}: the model "
                f"follows {say.name(a)} in {p} of {kind}, an interval that includes 50%")
    if share_other > say.NOTABLE:
        text += (f" (counting the {decided} of {images} images decided for either cue; "
                 f"{say.pct(share_other)} went to a class neither cue indicates)")
    return text + say.width_caveat(preference, "images") + held_clause(conflict)


def held_clause(conflict: ConflictResult) -> str:
    """What the held cues did: a balanced cue whose pull is clearly above zero decided part of
    the images, so the preference says less than it seems."""
    strong = [(g, e) for g, e in conflict.pulls.items() if e.low is not None and e.low > 0]
    neutral = [g for g, how in conflict.held.items() if how == "neutral"]
    text = ""
    if strong:
        listed = ", ".join(f"{say.name(g)} {say.estimate(e)}" for g, e in strong)
        text += (f"; but held cues balanced between the two classes moved decisions between "
                 f"them ({listed} of the images), so these decisions follow a third cue as much "
                 "as the two in conflict")
    elif conflict.pulls:
        text += ("; the cues held balanced between the two classes ("
                 + ", ".join(say.name(g) for g in conflict.pulls) + ") moved no clear share "
                 "of the decisions")
    if neutral:
        text += ("; " if text else "; ") + ", ".join(say.name(g) for g in neutral) + \
            " held at a training level paired with no class"
    return text


def conflict_figure(conflict: ConflictResult, classes: list[str]) -> Figure:
    """Left: the preference for cue a in each (a's class, b's class) cell, with the decisions it
    rests on. Right: all conflict decisions split into follows a / follows b / neither."""
    k = len(classes)
    fig = Figure(figsize=(7.6, 0.9 + 0.55 * k + 0.6), layout="constrained")
    grid = fig.add_gridspec(1, 2, width_ratios=[1.25, 1])
    _matrix(fig.add_subplot(grid[0]), conflict, classes)
    _shares(fig.add_subplot(grid[1]), conflict)
    return fig


def _matrix(ax, conflict: ConflictResult, classes: list[str]) -> None:
    a, b = conflict.factors
    k = len(classes)
    counts = np.asarray(conflict.decisions, dtype=float).reshape(k, k, k)
    ia, ib = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    won_a, won_b = counts[ia, ib, ia], counts[ia, ib, ib]
    matrix = np.array([[np.nan if v is None else v for v in row]
                       for row in conflict.preference_matrix], dtype=float)
    # orange where b's cue wins, blue where a's does: the colours of the bars beside it
    cmap = LinearSegmentedColormap.from_list("cue", [CUE_B, "#f5f5f4", CUE_A]).with_extremes(
        bad="#eef0f3")
    ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(matrix):
        n = int(won_a[i, j] + won_b[i, j])
        if i == j:
            ax.text(j, i, "–", ha="center", va="center", color=MUTED, fontsize=8)
        elif np.isnan(v):
            ax.text(j, i, f"n={n}", ha="center", va="center", color=MUTED, fontsize=7)
        else:
            ax.text(j, i, f"{v:.0%}\nn={n}", ha="center", va="center", fontsize=7,
                    color="white" if abs(v - 0.5) > 0.3 else INK)
    ax.set_xticks(range(k), classes, rotation=30, fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set_ylabel(f"{say.name(a)} says", fontsize=9)
    ax.set_xlabel(f"{say.name(b)} says", fontsize=9)
    ax.set_title(f"decisions for {say.name(a)}'s class\n(of those for either cue)", fontsize=9)
    for side in ax.spines.values():
        side.set_visible(False)


def _shares(ax, conflict: ConflictResult) -> None:
    a, b = conflict.factors
    parts = [(conflict.share_a, f"follows {say.name(a)}", CUE_A),
             (conflict.share_b, f"follows {say.name(b)}", CUE_B),
             (conflict.share_other, "neither", NEITHER)]
    for y, (e, label, color) in enumerate(parts):
        v = e.value or 0.0
        ax.barh(y, v, color=color, height=0.6)
        if e.low is not None:
            ax.errorbar(v, y, xerr=[[v - e.low], [e.high - v]], color=INK, capsize=3,
                        linewidth=1)
        ax.text(max(v, e.high or 0) + 0.03, y, say.pct(v), va="center", fontsize=8)
    ax.set_yticks(range(len(parts)), [p[1] for p in parts], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.15)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_title(f"all {conflict.images} conflict images", fontsize=9)
    style(ax)
    ax.grid(axis="y", visible=False)


def section(factor: str, key: str, conflict: ConflictResult, page: PageContext) -> str:
    """The conflict from `factor`'s side; its figure under the factor whose section comes
    first."""
    a, b = conflict.factors
    other = b if factor == a else a
    owner = page.first(conflict.factors)
    head = f"Conflict with {esc(say.name(other))} <small>{conflict.images} images</small>"
    text = f"<p>{prose(sentence(conflict, factor))}</p>"
    if conflict.images == 0:
        return f"<h3>{head}</h3>{text}"
    if factor != owner:
        return (f"<h3>{head}</h3>{text}<p class='note'>The decision matrix is under "
                f"<a href='#{anchor(owner)}'>{esc(say.title(owner))}</a>.</p>")
    caption = (f"Each cell: images where {esc(say.name(a))} says the row's class and "
               f"{esc(say.name(b))} the column's; the colour and percentage are the decisions "
               f"for {esc(say.name(a))}'s class among those for either (n of them). "
               f"Preference for {esc(say.name(a))} overall: "
               f"{esc(say.estimate(conflict.preference))}.")
    uri = page.pictures.uri(KIND.figure_name(key),
                            lambda: conflict_figure(conflict, page.classes))
    return (f"<h3>{head}</h3>{text}" + figure(uri, f"{a} vs {b} decision matrix", caption)
            + numbers_table(conflict))


def numbers_table(c: ConflictResult) -> str:
    a, b = c.factors
    rows = [(f"preference for {say.name(a)}", c.preference),
            (f"conflict excess of {say.name(a)} (reliance)", c.excess_a),
            (f"conflict excess of {say.name(b)} (reliance)", c.excess_b),
            ("decisions for neither cue's class", c.share_other),
            (f"decisions for a class only a held cue indicates (chance "
             f"{say.pct(c.third_cue_chance)})", c.third_cue_share)]
    rows += [(f"pull of {say.name(g)}, held balanced", e) for g, e in c.pulls.items()]
    body = "".join(f"<tr><td>{esc(label)}</td><td class='num'>{estimate_cell(e)}</td></tr>"
                   for label, e in rows)
    held = ", ".join(f"{say.name(g)}: {how}" for g, how in c.held.items()) or "none"
    return (f"<details><summary>The numbers</summary><table class='numbers'><tbody>{body}"
            f"</tbody></table><p class='note'>Held cues: {esc(held)}. {c.models} model"
            f"{'s' if c.models > 1 else ''}; intervals resample models, then images.</p>"
            "</details>")


def describe(exp: Experiment) -> list[str]:
    return [f"conflict {c.factors[0]} vs {c.factors[1]}: {c.images} images"
            for c in exp.conflicts]


KIND = ProbeKind(
    name="conflict", result_model=ConflictResult, statistics=statistics,
    factors=lambda c: list(c.factors), reliance=reliance, robustness=lambda key, c: [],
    precedence=2, metrics=metrics, claim=claim,
    sentence=sentence, section=section, describe=describe,
    reliance_text="for a factor with neither, the conflict excess of its first conflict: the "
                  "share of decisions for its class beyond a class no cue indicates",
    glossary=(("Cue preference", "On conflict images, where one factor indicates one class "
               "and another\nfactor a different class: the share of decisions for the first "
               "factor's class among the\ndecisions for either. Every other factor that "
               "indicates a class in training is held so that it\nfavours neither: at a "
               "training level paired with no class, or balanced between the two classes."),
              ("Third cue", "A held factor. Neutral ones indicate no class; for balanced ones "
               "the page gives\nthe share of decisions each moves between the two classes "
               "(its pull): a large pull means that\ncue, not the two in conflict, decided the "
               "images."),
              ("Conflict excess", "The share of conflict decisions for a cue's class, on images "
               "where the\nbalanced cues favour the other class, minus the share any class "
               "that no cue indicates gets:\n0 for a model that does not use the cue.")))
