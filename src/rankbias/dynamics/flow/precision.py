"""What float precision allows a flow: the dtype's default tolerances, the default ``atol``
for an initialization, and the warnings when a tolerance or an initialization is below what
the dtype resolves (:class:`~rankbias.PrecisionWarning`, :class:`~rankbias.ResolutionWarning`)."""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np

from .._common import PrecisionWarning, ResolutionWarning

#: Float64 defaults of the flow's tolerances; other dtypes scale them (:func:`flow_defaults`).
_DEFAULTS64 = dict(rtol=1e-8, gtol=1e-10, curvature_tol=1e-6, certificate_tol=1e-6)


def flow_defaults(dtype) -> dict:
    """Default ``rtol``, ``gtol``, ``curvature_tol`` and ``certificate_tol`` for ``dtype``.

    Float64: ``rtol = 1e-8``, ``gtol = 1e-10``, ``curvature_tol = certificate_tol = 1e-6``.
    Float32 (``eps = 1.2e-7``): ``rtol = 1e-5`` (local errors are estimated from differences
    of states whose rounding is ``eps |y|``; below ``~100 eps`` the estimate is noise and the
    controller shrinks the step without end), ``gtol = 1e-5`` and ``certificate_tol =
    curvature_tol = 1e-4`` (the gradient at a minimiser is computed to ``~eps ||M||``
    per entry: the float64 thresholds are below it and the steady state is never certified).
    """
    if jnp.dtype(dtype) == jnp.float64:
        return dict(_DEFAULTS64)
    return dict(rtol=1e-5, gtol=1e-5, curvature_tol=1e-4, certificate_tol=1e-4)


def warn_tolerance_floors(tols: dict, dtype, stacklevel: int) -> None:
    """A :class:`PrecisionWarning` for each of ``rtol`` (below ``10 eps``), ``certificate_tol``
    and ``curvature_tol`` (below ``100 eps``) that ``dtype`` cannot resolve."""
    eps = float(jnp.finfo(dtype).eps)
    name = jnp.dtype(dtype).name
    d = flow_defaults(dtype)
    for key, floor in (
        ("rtol", 10 * eps),
        ("certificate_tol", 100 * eps),
        ("curvature_tol", 100 * eps),
    ):
        v = tols[key]
        if v < floor:
            warnings.warn(
                f"`{key}` = {v:g} is below what {name} resolves (~{floor:.1g}, "
                f"eps = {eps:.2g}): the solver may take tiny steps without end or never "
                f"certify the steady state; the {name} default is "
                f"{d[key]:g}",
                PrecisionWarning,
                stacklevel=stacklevel + 1,
            )


def default_atol(rtol: float, y0: np.ndarray) -> float:
    """``min(1e-12, 1e-4 * rtol * max|y0|)``: an absolute floor below the initial factors.

    A fixed ``atol`` (say 1e-12) exceeds every factor entry once ``alpha^(1/L) < 1e-12``
    (``alpha <= 1e-24`` at depth 2), and the error control would then ignore the small
    directions whose competition decides which one escapes first.

    Float32 (``y0``'s dtype): ``min(1e-6, max(1e-4 rtol max|y0|, 10 eps max|y0|))``. Below
    ``~10 eps max|y0|`` the error estimate of a component near zero is rounding noise:
    measured on the 15 x 15, depth-3 completion from scale 1e-3 (``max|y0| = 0.1``), atol
    1e-12 took 15,469 steps (5,281 rejected) to the steady state, 1e-8 took 3,345 and 1e-6
    625, all ending within 4.4e-4 of the float64 end point.
    """
    top = float(np.max(np.abs(y0))) if y0.size else 1.0
    if np.asarray(y0).dtype == np.float32:
        eps = float(np.finfo(np.float32).eps)
        return float(min(1e-6, max(1e-4 * rtol * top, 10 * eps * top, 1e-30)))
    return float(min(1e-12, max(1e-4 * rtol * top, 1e-300)))


#: A user's ``atol`` above this fraction of the initial factors' largest entry warns: the
#: error control then ignores the factors' small components, whose competition decides the
#: escapes. Measured on the 8 x 8 depth-3 completion from scale 1e-9 (entries <= 8.5e-4):
#: atol = 1e-3 max|y0| ended within 6e-10 of the default's end point at a steady state,
#: 1e-2 max|y0| and above lost the steady state (t_max), 10 max|y0| moved it by 2.5e-6.
ATOL_MAX_RATIO = 1e-3


def warn_atol(atol: float, y0: np.ndarray, rtol: float, stacklevel: int = 2) -> None:
    """A :class:`PrecisionWarning` when ``atol < eps max|y0|``: the rounding of the factors'
    entries alone exceeds it (many rejected steps, or no progress); and when
    ``atol > ATOL_MAX_RATIO max|y0|`` (of the run with the smallest init, for a batch of
    ``y0`` rows): the error control no longer sees the initial factors' entries.

    ``stacklevel`` (here and in the other warnings of this module): what the caller would pass
    to :func:`warnings.warn` to point at the user's call."""
    eps = float(np.finfo(np.asarray(y0).dtype).eps)
    top = float(np.max(np.abs(y0))) if np.size(y0) else 0.0
    rows = np.asarray(y0).reshape(-1, np.shape(y0)[-1]) if np.size(y0) else None
    if rows is not None:
        y_small = rows[np.argmin(np.abs(rows).max(axis=1))]
        small = float(np.max(np.abs(y_small)))
        if 0 < small < atol / ATOL_MAX_RATIO:
            warnings.warn(
                f"`atol` = {atol:g} is large against the initial factors' entries "
                f"(max|params| = {small:.2g}): the error control ignores components below "
                f"atol, which changes the trajectory; take atol <= "
                f"{ATOL_MAX_RATIO * small:.2g} ({ATOL_MAX_RATIO:g} max|params|) or atol=None "
                f"(the default here: {default_atol(rtol, y_small):.2g})",
                PrecisionWarning,
                stacklevel=stacklevel + 1,
            )
    if atol < eps * top:
        warnings.warn(
            f"`atol` = {atol:g} is below the rounding of the initial factors in "
            f"{np.asarray(y0).dtype} (eps max|params| = {eps * top:.2g}): expect many "
            f"rejected steps; atol=None derives one from the dtype",
            PrecisionWarning,
            stacklevel=stacklevel + 1,
        )


def _deep_scale(model, y0: np.ndarray) -> tuple[int, float, float]:
    """``(L, max|y0|, eps of y0's dtype)`` with ``L = model.depth``."""
    top = float(np.max(np.abs(y0))) if y0.size else 0.0
    return model.depth, top, float(np.finfo(y0.dtype).eps)


def below_rounding_floor(model, y0: np.ndarray) -> bool:
    """``max|y0|^(L-2) < 100 eps`` at depth ``L >= 3``: after the first escape the curvature
    along the next directions (``~max|y0|^(L-2)`` of the learned one's) is at the rounding
    level of the gradient in ``y0``'s dtype (see :func:`warn_resolution`)."""
    depth, top, eps = _deep_scale(model, y0)
    return depth >= 3 and 0 < top and top ** (depth - 2) < 100 * eps


#: Later escapes of a depth-L flow are unresolved when ``max|y0|^(L-1)`` is below this
#: fraction of the dtype's epsilon (measured, see :func:`warn_resolution`).
LATER_ESCAPE_FLOOR = 1e-2


def later_escapes_unresolved(model, y0: np.ndarray) -> bool:
    """``max|y0|^(L-1) < LATER_ESCAPE_FLOOR * eps`` at depth ``L >= 3``."""
    depth, top, eps = _deep_scale(model, y0)
    return depth >= 3 and 0 < top and top ** (depth - 1) < LATER_ESCAPE_FLOOR * eps


def warn_resolution(model, y0: np.ndarray, stacklevel: int = 2) -> None:
    """Warn when the later escapes of a deep flow are below float resolution.

    At depth ``L >= 3`` a direction barely grows before the previous one escapes (its
    growth is a blow-up, not an exponential): after the first escape it still has its initial
    size ``a ~ max|y0|`` per factor, and its drive, ``~a^(L-1)``, is computed from factor
    entries that are now O(1). Its escape time is then set by the rounding of the gradient
    (and, at coarse ``rtol``, by the local errors), not by the initialization. Measured against
    closed forms (``tests/test_escape_times.py``: identical init seen in random orthogonal
    frames, depth 3 and 4, whose escape times are quadratures), the second escape is off by
    ~1e-5 ``eps / max|y0|^(L-1)``: <= 5e-4 at ``max|y0|^(L-1) = 0.3 eps``, 0.1-0.4% at
    3e-3 eps, 3-5% at 3e-4 eps, 5-30% at 3e-5 eps (depth 3, ``a = 1e-8 ... 1e-10``; depth 4
    at ``a = 1e-6``: 0.1% at 4e-3 eps), whatever ``rtol`` (1e-8 to 1e-11) or solver. So the
    warning fires when ``max|y0|^(L-1) < LATER_ESCAPE_FLOOR eps`` (float64, depth 3:
    ``alpha <~ 3e-27``; depth 4: ``alpha <~ 3e-24``). ``rtol`` is not part of the test: at
    ``a = 1e-8`` the second escape is right to 5e-4 at ``rtol = 1e-8``.

    When moreover ``max|y0|^(L-2) < 100 eps`` (float64: depth 4 from ``alpha ~ 1e-32``), the
    curvature along the next directions, ``~max|y0|^(L-2)`` of the learned one's, is at the
    rounding level of the float64 gradient: measured on 20x20 depth 4 at alpha 1e-32 after the
    first escape, the float64 gradient differs from an 80-bit one at the same state by 99-214%
    (``tests/test_long_times.py``). The stretch after the first escape is then pure rounding
    noise (its error estimates grow with ``h``, so steps stay short); the warning says so.
    """
    depth, top, eps = _deep_scale(model, y0)
    if below_rounding_floor(model, y0):
        warnings.warn(
            f"depth-{depth} flow from factors of size max|y0| = {top:.2g}: after the first "
            f"escape the curvature along the next directions (~max|y0|^{depth - 2} = "
            f"{top ** (depth - 2):.1g} of the learned one's) is at the rounding level of the "
            f"{y0.dtype} gradient; the later escapes are driven by rounding noise, no solver or "
            f"rtol resolves them, and the stretch after the first escape needs very many short "
            f"steps. The first escape is not affected (docs: Numerical notes, 'Resolution of later escapes')",
            ResolutionWarning,
            stacklevel=stacklevel + 1,
        )
    elif later_escapes_unresolved(model, y0):
        warnings.warn(
            f"depth-{depth} flow from factors of size max|y0| = {top:.2g}: max|y0|^{depth - 1} "
            f"= {top ** (depth - 1) / eps:.1g} eps of {y0.dtype}, so the directions escaping "
            f"after the first one have a drive below the gradient's rounding error, and their "
            f"escape times are unresolved: measured errors ~1e-5 eps / max|y0|^{depth - 1} "
            f"(3-5% at 3e-4 eps, 5-30% at 3e-5 eps), whatever the solver or rtol. The first "
            f"escape is not affected (docs: Numerical notes, 'Resolution of later escapes')",
            ResolutionWarning,
            stacklevel=stacklevel + 1,
        )
