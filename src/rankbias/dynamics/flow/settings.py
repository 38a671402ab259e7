"""A flow's settings resolved for its dtype and initial point: the one object the engine takes.

:class:`~rankbias.options.FlowOptions` validates the user's options once; :class:`FlowSettings`
fills in what depends on the run (the dtype's default tolerances, then the ``atol`` of the
initialization) and splits them the way the compiled solve needs them: :class:`FlowConfig`,
static (with the shapes and dtypes, the compilation key), and :class:`Tolerances`, traced
(runs that differ only in these reuse one compiled solve).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ...options import FlowOptions
from .precision import default_atol, flow_defaults, warn_atol, warn_tolerance_floors
from .save import check_save_at, save_times


@dataclass(frozen=True)
class FlowConfig:
    """The static part of a flow: with the shapes and dtypes, the compilation key.

    Of :class:`FlowOptions`' static fields, ``solver`` is here; ``n_save`` is the shape of the
    save times and ``dtype`` that of the state, so they key the compilation through the shapes
    and dtypes; ``backend`` chooses the problem's type (dense or factor form). ``max_steps`` is
    a traced step budget (:class:`~.controller.Segmented`)."""

    solver: str
    steady_stop: bool  # gtol is not None: the steady-state event is compiled in
    save_matrices: bool


class Tolerances(NamedTuple):
    """The traced settings of a flow (scalar arrays of the state's dtype; ``max_steps`` an
    int32): runs that differ only in these reuse one compiled solve."""

    rtol: jax.Array
    atol: jax.Array
    gtol: jax.Array
    curvature_tol: jax.Array
    certificate_tol: jax.Array
    max_steps: jax.Array


def traced_tolerances(
    dtype, rtol, atol, gtol, curvature_tol, certificate_tol, max_steps
) -> Tolerances:
    """:class:`Tolerances` as arrays of ``dtype`` (``None``: 0, never read)."""

    def f(x):
        return jnp.asarray(0.0 if x is None else x, dtype)

    return Tolerances(
        f(rtol),
        f(atol),
        f(gtol),
        f(curvature_tol),
        f(certificate_tol),
        jnp.asarray(max_steps, jnp.int32),
    )


@dataclass(frozen=True, eq=False)
class FlowSettings:
    """:class:`FlowOptions` with every default resolved: what one run (or batch) uses.

    ``rtol``, ``curvature_tol`` and ``certificate_tol`` are the dtype's defaults
    (:func:`flow_defaults`) where the options leave them ``None``; ``gtol`` is the dtype's
    default for ``"auto"`` and stays ``None`` (no steady-state stop) for ``None``; ``atol`` is
    ``None`` until :meth:`for_init` sees the initialization.
    """

    options: FlowOptions
    dtype: Any  # a resolved float dtype (float64 or float32)
    rtol: float
    gtol: float | None
    curvature_tol: float
    certificate_tol: float
    save_at: np.ndarray | None = None
    save_matrices: bool = False
    atol: float | None = None

    @classmethod
    def resolve(
        cls, options: FlowOptions, dtype, save_at, save_matrices: bool, stacklevel: int
    ) -> FlowSettings:
        """Fill in ``dtype``'s defaults and check ``save_at`` against ``t_max``; warns
        (:class:`PrecisionWarning`, at ``stacklevel`` from the caller) for tolerances below
        what ``dtype`` resolves."""
        d = flow_defaults(dtype)
        gtol = d["gtol"] if options.gtol == "auto" else options.gtol
        out = cls(
            options=options,
            dtype=dtype,
            rtol=d["rtol"] if options.rtol is None else options.rtol,
            gtol=gtol,  # pyright: ignore[reportArgumentType]  # "auto" resolved above
            curvature_tol=d["curvature_tol"]
            if options.curvature_tol is None
            else options.curvature_tol,
            certificate_tol=d["certificate_tol"]
            if options.certificate_tol is None
            else options.certificate_tol,
            save_at=None if save_at is None else check_save_at(save_at, options.t_max),
            save_matrices=save_matrices,
            atol=options.atol,
        )
        warn_tolerance_floors(out._tols(), dtype, stacklevel + 1)
        return out

    def _tols(self) -> dict:
        return dict(
            rtol=self.rtol, curvature_tol=self.curvature_tol, certificate_tol=self.certificate_tol
        )

    def for_init(self, rows: np.ndarray, stacklevel: int) -> FlowSettings:
        """These settings for the initial states ``rows`` (``(B, P)``, flat parameters): the
        default ``atol`` is that of the smallest init (:func:`default_atol`); a given one warns
        (:func:`warn_atol`, ``stacklevel`` as if the caller warned) when the rows make it
        meaningless."""
        if self.options.atol is None:
            atol = min(default_atol(self.rtol, y) for y in rows)
        else:
            atol = self.options.atol
            warn_atol(atol, rows, self.rtol, stacklevel + 1)
        return dataclasses.replace(self, atol=atol)

    def finer(self, stacklevel: int) -> FlowSettings:
        """The settings of ``error_estimate``'s second solve: ``rtol`` and ``atol`` / 10, no
        matrices recorded; warns as a call with these tolerances would."""
        assert self.atol is not None  # after for_init
        options = self.options.replace(rtol=self.rtol / 10, atol=self.atol / 10)
        return FlowSettings.resolve(options, self.dtype, self.save_at, False, stacklevel + 1)

    @property
    def config(self) -> FlowConfig:
        return FlowConfig(self.options.solver, self.gtol is not None, self.save_matrices)

    def tolerances(self) -> Tolerances:
        return traced_tolerances(
            self.dtype,
            self.rtol,
            self.atol,
            self.gtol,
            self.curvature_tol,
            self.certificate_tol,
            self.options.max_steps,
        )

    def save_times(self) -> np.ndarray:
        """The record times (:func:`save_times` of ``t_max``, ``n_save``, ``t_min``,
        ``save_at``)."""
        o = self.options
        return save_times(o.t_max, o.n_save, o.t_min, self.save_at, o.save_spacing)
