"""One colour per variant: the PNG figures (``plotting_style.colour``, a function of the variant's factorial cell) and
the `dvc plots` template (.dvc/plots/by_variant.json) give every factorial variant the same colour."""

from __future__ import annotations

import json

from conftest import REPO
from landscape.report.plotting_style import CELL_COLOURS, colour
from landscape.study.params import load_params


def template_colours() -> dict[str, str]:
    """variant -> colour of the `dvc plots` template's colour scale."""
    scale = json.loads((REPO / ".dvc/plots/by_variant.json").read_text())["encoding"]["color"]["scale"]
    assert len(scale["domain"]) == len(scale["range"]), "by_variant.json: one colour per variant in the domain"
    return dict(zip(scale["domain"], (c.lower() for c in scale["range"]), strict=True))


def test_template_colours_every_factorial_variant():
    """The dvc data plots (plots/study/*.csv) draw the factorial cells only; the template names exactly those."""
    params = load_params(REPO / "params.yaml")
    assert set(template_colours()) == set(params.study.factorial)


def test_factorial_variants_have_one_colour_in_pngs_and_dvc_plots():
    params = load_params(REPO / "params.yaml")
    template = template_colours()
    differ = {
        v: (template[v], colour(params.variant(v)).lower())
        for v in params.factorial()
        if template[v] != colour(params.variant(v)).lower()
    }
    assert not differ, f"variant: (dvc plots template, PNG) colours differ: {differ}"
    # every cell of the factorial has its own colour, in both
    assert len(set(CELL_COLOURS.values())) == len(CELL_COLOURS) == 8
    assert len({template[v] for v in params.factorial()}) == len(params.factorial())
