"""HTML pieces for the page: escaping, sentences, figures, tables, anchors, and what a probe
kind's section is given (`PageContext`). (A leaf module: the probe kinds import it.)"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import words
from .figures import Pictures

if TYPE_CHECKING:
    from ..probes.estimate import Estimate


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


def estimate_cell(e: Estimate | None) -> str:
    return esc(words.estimate(e)) if words.defined(e) else "–"


@dataclass
class PageContext:
    """What a probe kind's section needs besides its result: the classes, the label factor,
    the factors in page order, and the page's pictures."""
    classes: list[str]
    label_factor: str
    order: list[str]
    pictures: Pictures = field(default_factory=Pictures)

    def first(self, factors) -> str:
        """Of these factors, the one whose section comes first (it hosts shared figures)."""
        return min(factors, key=lambda f: self.order.index(f) if f in self.order else 1e9)
