"""Cells outside the factorial (questions 1 and 4's: other training settings or widths, no slice or path probe) in
the analysis and render passes, and the seed bands their figures and the factorial's share."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.figure import Figure

from landscape.report.analysis.figures import band as seed_band
from landscape.report.analysis.stats import finite_ci, geometric_ci
from landscape.report.plotting_style import band
from landscape.report.render.plotting import FIGURES, write_figures
from landscape.report.render.report import build_report, what_was_run
from landscape.study.params import load_params
from test_report import FACTORIAL, full_factorial

T_975_2 = 4.302652729911275  # t_{0.975, 2}


@pytest.fixture(scope="module")
def study():
    return full_factorial(load_params())


def test_a_cell_outside_the_factorial_enters_the_table_but_no_factorial_number(study) -> None:
    raw, data = study
    assert raw["factorial"] == list(FACTORIAL) and "mlp_slow" in raw["variants"]
    slow = raw["variants"]["mlp_slow"]
    assert "curvature_exact" not in slow and "finite_step_curvature" not in slow and "path_distance" not in slow
    assert slow["val_acc"]["interval"]["mean"] == pytest.approx(0.84) and slow["lambda_max"]["interval"]["n"] == 3
    (row,) = [r for r in raw["what_was_run"] if r["variant"] == "mlp_slow"]
    assert row["factorial"] is False and row["overrides"] == {"lr": 0.003}
    assert {r["variant"] for r in raw["geometry"]["finite_step"]} == set(FACTORIAL)
    assert set(raw["figures"]["learning"]) == set(FACTORIAL)


def test_section_1_names_both_models_sizes_and_every_other_cell(study) -> None:
    _, data = study
    text = what_was_run(data.study)
    a, b = (data.all_runs[(v, 0)].train.n_parameters for v in ("mlp", "cnn"))
    assert f"Model A is `mlp` ({a:,} parameters), Model B is `cnn` ({b:,} parameters)" in text
    assert "| mlp_slow | mlp | 1,056 | lr 0.003 | 0, 1, 2 |" in text


def test_the_render_pass_draws_every_figure_with_a_cell_outside_the_factorial(study, tmp_path) -> None:
    _, data = study
    written = write_figures(data.study, tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{name}.png" for name in FIGURES)
    assert "| mlp_slow | 84.00 % [" in build_report(data.study)


def test_a_seed_band_is_the_t_interval_of_each_column() -> None:
    per_seed = np.array([[1.0, 10.0], [2.0, np.nan], [3.0, 30.0]])
    b = seed_band(np.array([0.0, 1.0]), per_seed, scale=100.0)
    assert b.x == [0.0, 1.0] and b.mean == pytest.approx([200.0, 2000.0])
    half = T_975_2 * 100.0 / math.sqrt(3)  # sd 1 (x 100) over 3 seeds
    assert (b.ci_low[0], b.ci_high[0]) == pytest.approx((200.0 - half, 200.0 + half))
    assert b.ci_low[1] == pytest.approx(finite_ci([1000.0, 3000.0]).ci_low)  # the nan seed left out
    ax = Figure().add_subplot()
    band(ax, b, "k")
    assert list(ax.lines[0].get_ydata()) == pytest.approx(b.mean) and len(ax.collections) == 1


def test_geometric_ci_is_the_t_ci_of_the_log_back_on_the_values_scale() -> None:
    """lambda_max 1, 10, 100: geometric mean 10, CI 10^(1 -+ t_{0.975,2} / sqrt 3) (sd of log10 is 1), above 0
    where the arithmetic CI of the same values reaches below it; a value <= 0 has no log and is left out."""
    half = T_975_2 / math.sqrt(3)
    i = geometric_ci([1.0, 10.0, 100.0])
    assert (i.mean, i.n) == (pytest.approx(10.0), 3)
    assert i.ci_low == pytest.approx(10.0 ** (1 - half)) and i.ci_high == pytest.approx(10.0 ** (1 + half))
    assert finite_ci([1.0, 10.0, 100.0]).ci_low < 0 < i.ci_low
    assert geometric_ci([0.0, 4.0, math.nan, 16.0]).mean == pytest.approx(8.0)  # 0 and nan left out: n = 2
    assert math.isnan(geometric_ci([0.0]).mean) and geometric_ci([0.0]).n == 0
