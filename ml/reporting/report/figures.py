"""Figures inline: a matplotlib figure as an SVG element (text kept as paths, so no font is
fetched), closed once drawn."""

from __future__ import annotations

import html
import io
import re

import matplotlib
import matplotlib.pyplot as plt


def svg(fig, alt: str) -> str:
    """The figure as inline SVG with a title for screen readers; deterministic ids and no metadata."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "rechallenge-report"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.S)  # RDF namespaces: no use
    size = re.search(r'<svg ([^>]*?)width="([0-9.]+)pt" height="[^"]*"', text)
    width = f"{float(size.group(2)) * 4 / 3:.0f}px" if size else "100%"  # natural size: never enlarged
    text = re.sub(r'<svg ([^>]*?)width="[^"]*" height="[^"]*"', r'<svg \1', text, count=1)
    return text.replace("<svg ", f'<svg role="img" aria-label="{html.escape(alt)}" class="figure" '
                                 f'style="max-width: {width}" ', 1)
