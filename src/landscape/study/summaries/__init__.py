"""The study's side of each probe: a run's random streams and params become the probe's settings, and the
probe's typed results become the per-run CSV rows and the summaries of ``landscape.study.results`` (the
metrics schema).

One module per probe stage, so that a stage depends on the probe modules it runs and no others; each has
one function (``robustness_probe``, ``slice_probe`` and ``surface_probe``, ``path_probe``,
``curvature_probe``) that does all three, so a stage script is: load, call it, write.
"""

from __future__ import annotations

from landscape.probes.directions import stream_seed


def stream_seeds(probe: str, draws: str, train_seed: int, n: int) -> list[int]:
    """The seeds of draws 0..n-1 of one probe's stream for training seed ``train_seed``. ``draws`` is the
    variant's draw family (``Params.draw_family``), so same-shape variants get the same directions and noise."""
    return [stream_seed(probe, draws, train_seed, k) for k in range(n)]
