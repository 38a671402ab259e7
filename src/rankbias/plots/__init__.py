r"""Figures of a sweep's dataset, of one run, of GLRL and of a GLRL comparison (matplotlib, Agg).

Sweep figures are saved as PNG and SVG. Conventions: the ``depth`` axis (if swept) gives one
panel per value, the ``alpha`` axis (if swept) one line per value, and every axis whose name
mentions ``seed`` or is ``problem`` is summarised (see *Statistic*). Any other swept axis is
fixed at its first value (named in the footnote). Time axes are logarithmic and frame the
dynamics: from just before the first visible change of a drawn line (:data:`VISIBLE_CHANGE`
of the panel's value span) to just after the last one, or to the last record when a run did
not end well. Titles are one line and say what is shown; the statistic and the fixed axes
are in the footnote; the legend (right of the panels) names every encoding: colors (alpha)
and, on ``singular-values``, line styles (``sigma_1``, ``sigma_2``, ``sigma_3``). There the
center line is grey below the float resolution floor ``eps * sigma_1 * max(m, n)``.

==========================  ====================================================================
figure                      content
==========================  ====================================================================
``loss``                    ``f(W(t))`` against ``t``
``singular-values``         the top singular values of ``W(t)`` against ``t``
``effective-rank``          the effective rank (``rank_ratio``, see :mod:`rankbias.metrics`)
``distance-vs-alpha``       final distance to GLRL (variable ``glrl_distance``; the variant,
                            PSD or asymmetric, from ``glrl_symmetric``) when the runs record
                            it, else the relative distance to the ground truth, against
                            ``alpha``, one line per depth
==========================  ====================================================================

**Runs that did not end well** (the dataset's ``status``, :func:`rankbias.status.ended_well`:
a flow stopped at ``t_max`` or by ``max_steps`` without a steady state, a diverged run, ...)
are drawn with an ``x`` at their last point, where they stopped, and the footnote counts
them by status ("x: a run that did not end well (2 of 6 runs: 1 max_steps, 1 t_max)").

**Statistic** (``stat``). ``"median"`` (default): the line is the median over the seed axes
and the band the 25-75% quantiles; ``"mean"``: mean and a band of one standard deviation.
When at most :data:`MAX_THIN` runs are summarised, each run is also drawn as a thin line.
The median is the default because the spread over seeds can be heavy-tailed on log axes:
on the ``glrl-depth`` sweep (depth 4, ``alpha = 1e-8``) two of five seeds end at large-norm
interpolants and the mean distance is 11 while the median is ``2.4e-5``; the mean line
there says the opposite of what three of five runs do. The statistic is named in the footnote.

One run: :func:`plot_trajectory` (also ``Trajectory.plot``) draws through the same panel code
as the sweep figures (the run becomes a one-run dataset, :meth:`Trajectory.to_xarray`), and
:func:`plot` accepts a :class:`~rankbias.Trajectory` in place of a dataset.
"""

# The constants named in the docstrings and the label helper stay importable from here, as
# before the split into one module per job (explicit re-exports, outside `__all__` as before).
from ._frame import VISIBLE_CHANGE as VISIBLE_CHANGE
from ._stats import MAX_THIN as MAX_THIN, STATS
from .files import plot, plot_all
from .glrl import plot_comparison, plot_glrl
from .sweep import FIGURES, glrl_variant_label as glrl_variant_label
from .trajectory import HELD_LABEL as HELD_LABEL, TRAJECTORY_KINDS, plot_trajectory

__all__ = [
    "FIGURES",
    "TRAJECTORY_KINDS",
    "STATS",
    "plot",
    "plot_all",
    "plot_trajectory",
    "plot_glrl",
    "plot_comparison",
]
