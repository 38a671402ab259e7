r"""Certified counter-examples to "gradient flow from ~0 finds the minimum nuclear norm".

1. :func:`razin_cohen`: the 2x2 completion of Razin & Cohen (2020): observed
   ``W_12 = W_21 = 1``, ``W_22 = 0``. Every completion has ``det W = -1``; from a balanced
   start with ``det W > 0`` the balanced depth-2 flow ``dW/dt = -(P G + G Q)``
   (``P = (W W^T)^{1/2}``, ``Q = (W^T W)^{1/2}``) keeps ``det > 0`` (each singular value moves
   at a rate proportional to itself: ``d log sigma_i / dt = -2 u_i^T G v_i``), so
   ``sigma_2 -> 0`` while ``|W_11|`` and ``||W||_*`` grow without bound.
   We integrate it in the representation ``W = R(theta) diag(e^{rho_1}, e^{rho_2}) R(phi)^T``
   which keeps ``log sigma_2`` itself: the sign of ``det`` cannot be lost to rounding.
   :func:`razin_cohen_naive` runs the same flow on the factors ``(W_1, W_2)`` with the
   engine and reports (with a warning) when ``det W`` flips sign — the numerical trap.
2. :func:`search`: small PSD completion instances where GLRL (= gradient flow from
   ``alpha -> 0``) reaches an exact fit whose trace exceeds the minimum trace, certified by
   (a) the GLRL limit with its KKT residuals, (b) the convex optimum with its duality gap,
   (c) gradient flow at ``alpha = 1e-32`` agreeing with GLRL. :func:`shipped_instance` is the
   best instance found, :func:`certify` re-checks any instance.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.integrate import solve_ivp

from ._io import atomic_write_text
from ._quiet import quietly
from ._validation import check_int, check_int_seed, check_positive
from .baselines.nuclear import min_nuclear_norm
from .dynamics._interrupt import raise_interrupts
from .dynamics.flow.api import gradient_flow
from .glrl import glrl
from .models import DeepFactorization, SymmetricFactorization
from .problems.completion import MatrixCompletion

__all__ = [
    "razin_cohen_problem",
    "razin_cohen",
    "razin_cohen_naive",
    "search",
    "certify",
    "shipped_instance",
    "SHIPPED",
]


# ----------------------------------------------------------------------------------------
# 1. Razin & Cohen 2x2


def razin_cohen_problem() -> MatrixCompletion:
    """``f(W) = 1/2 [(W_12 - 1)^2 + (W_21 - 1)^2 + W_22^2]`` (``W_11`` unobserved)."""
    M = np.array([[0.0, 1.0], [1.0, 0.0]])
    mask = np.array([[False, True], [True, True]])
    return MatrixCompletion(M, mask)


def _rot(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s], [s, c]])


def _rc_rhs(t, y):
    th, ph, r1, r2 = y
    U, V = _rot(th), _rot(ph)
    s1, s2 = np.exp(r1), np.exp(r2)
    W = (U * [s1, s2]) @ V.T
    G = np.array([[0.0, W[0, 1] - 1.0], [W[1, 0] - 1.0, W[1, 1]]])
    Gh = U.T @ G @ V
    # d log sigma_i = -2 Gh_ii; singular vectors rotate at
    # (U^T dU)_12 = (s2 Gh_12 + s1 Gh_21)/(s1 - s2) = -dtheta, same with s1 <-> s2 for V.
    gap = s1 - s2
    dth = -(s2 * Gh[0, 1] + s1 * Gh[1, 0]) / gap
    dph = -(s1 * Gh[0, 1] + s2 * Gh[1, 0]) / gap
    return [dth, dph, -2.0 * Gh[0, 0], -2.0 * Gh[1, 1]]


def razin_cohen(
    t_max: float = 1e8,
    alpha: float = 1e-3,
    *,
    seed: int = 0,
    n_save: int = 400,
    ratio: float = 0.5,
    rtol: float = 1e-10,
    atol: float = 1e-12,
) -> dict:
    r"""Balanced depth-2 gradient flow on the Razin-Cohen 2x2 completion, ``det W(0) > 0``.

    ``W(0) = alpha R(theta_0) diag(1, ratio) R(phi_0)^T`` (random angles from ``seed``). The
    state is ``(theta, phi, log sigma_1, log sigma_2)``, integrated by LSODA to ``t_max``.

    Returns arrays over log-spaced times: ``W11``, ``nuclear_norm``, ``log10_sigma_min``,
    ``log10_det`` (``det = sigma_1 sigma_2 > 0`` by construction: ``det_sign`` is +1), ``loss``, ``effective_rank``
    (``||W||_* / ||W||_2``); and the fitted growth ``|W_11| ~ t^p`` at late times.
    """
    t_max = check_positive(t_max, "t_max")
    alpha = check_positive(alpha, "alpha")
    if not 0 < ratio < 1:
        raise ValueError(f"`ratio` must be in (0, 1) (distinct singular values), got {ratio}")
    rng = np.random.default_rng(seed)
    th0, ph0 = rng.uniform(0, 2 * np.pi, 2)
    y0 = [th0, ph0, np.log(alpha), np.log(alpha * ratio)]
    ts = np.concatenate([[0.0], np.geomspace(1e-2, t_max, n_save - 1)])
    sol = solve_ivp(_rc_rhs, (0.0, t_max), y0, method="LSODA", t_eval=ts, rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"razin_cohen: integration failed at t = {sol.t[-1]:.4g}: {sol.message}")
    th, ph, r1, r2 = sol.y
    s1, s2 = np.exp(r1), np.exp(r2)
    W = np.stack(
        [(_rot(a) * [x, y]) @ _rot(b).T for a, b, x, y in zip(th, ph, s1, s2, strict=True)]
    )
    loss = 0.5 * ((W[:, 0, 1] - 1) ** 2 + (W[:, 1, 0] - 1) ** 2 + W[:, 1, 1] ** 2)
    late = sol.t > sol.t[-1] / 1e3
    p = float(np.polyfit(np.log(sol.t[late]), np.log(np.abs(W[late, 0, 0])), 1)[0])
    return dict(
        times=sol.t,
        W11=W[:, 0, 0],
        nuclear_norm=s1 + s2,
        log10_sigma_min=r2 / np.log(10),
        log10_det=(r1 + r2) / np.log(10),
        det_sign=np.ones_like(r1),
        loss=loss,
        effective_rank=(s1 + s2) / s1,
        growth_exponent=p,
        alpha=alpha,
        seed=seed,
    )


@raise_interrupts()  # a run cut short would be a wrong result: Ctrl-C propagates
def razin_cohen_naive(
    t_max: float = 1e4, alpha: float = 1e-3, *, seed: int = 0, n_save: int = 400
) -> dict:
    """The same flow on the factors ``(W_1, W_2)`` (engine, float64), from the balanced start
    of :func:`razin_cohen`. Reports the first recorded time at which ``det W`` changed sign
    (``None`` if it did not) and warns: the factor representation cannot resolve ``det W``
    once it falls below float64 resolution, and then converges to a finite ``det = -1``
    completion — a numerical artefact, not the flow."""
    rng = np.random.default_rng(seed)
    th0, ph0 = rng.uniform(0, 2 * np.pi, 2)
    S = np.sqrt(np.array([1.0, 0.5]) * alpha)
    W1 = (np.eye(2) * S) @ _rot(ph0).T  # W = W2 W1, balanced: W1 W1^T = W2^T W2
    W2 = _rot(th0) * S
    prob = razin_cohen_problem()
    model = DeepFactorization((2, 2), depth=2, width=2)
    tr = gradient_flow(
        prob,
        model,
        (W1, W2),
        t_max=t_max,
        gtol=None,
        n_save=n_save,
        save_matrices=True,
        rtol=1e-10,
        atol=1e-14,
    )
    assert tr.matrices is not None  # save_matrices=True
    det = np.linalg.det(tr.matrices)
    flips = np.nonzero(np.sign(det[1:]) != np.sign(det[:-1]))[0]
    t_flip = float(tr.times[flips[0] + 1]) if flips.size else None
    if t_flip is not None:
        warnings.warn(
            f"razin_cohen_naive: det W changed sign at t ~ {t_flip:.4g}: the factor "
            "representation lost the sign of det W (below float64 resolution); its "
            f"final W_11 = {tr.final_matrix[0, 0]:.4g} is an artefact",
            RuntimeWarning,
            stacklevel=2,
        )
    return dict(
        times=tr.times,
        det=det,
        W11=tr.matrices[:, 0, 0],
        t_flip=t_flip,
        final_W11=float(tr.final_matrix[0, 0]),
        final_det=float(det[-1]),
    )


# ----------------------------------------------------------------------------------------
# 2. Search for larger-than-minimum-trace GLRL limits

#: The best certified instance found by ``search(n_trials=..., seed=...)`` (see docs/guides/counterexamples.md).
SHIPPED: dict | None = dict(
    # search(out_dir, n_trials=15, seed=0, d=4, rank=1, n_pairs=6): trial 2.
    M=[
        [0.0, -0.13399910455596403, 1.424556436903088, -0.6934743403918512],
        [-0.13399910455596403, 0.016521159578136494, 0.0, 0.0855005731487688],
        [1.424556436903088, 0.0, 0.0, 0.0],
        [-0.6934743403918512, 0.0855005731487688, 0.0, 0.4424839536349624],
    ],
    mask=[[0, 1, 1, 1], [1, 1, 0, 1], [1, 0, 0, 0], [1, 1, 0, 1]],
    glrl_trace=3.41306165502651,
    min_trace=3.3081179813731962,
    duality_gap=5.451406437373407e-09,
)


def _random_instance(rng, d: int, rank: int, n_pairs: int) -> MatrixCompletion:
    G = rng.standard_normal((d, rank))
    M = G @ G.T
    iu = np.array([(i, j) for i in range(d) for j in range(i, d)])
    pick = iu[rng.choice(len(iu), size=n_pairs, replace=False)]
    mask = np.zeros((d, d), bool)
    mask[pick[:, 0], pick[:, 1]] = True
    mask |= mask.T
    return MatrixCompletion(M, mask, dense=True)


def instance_from_dict(inst: dict) -> MatrixCompletion:
    M = np.asarray(inst["M"], dtype=np.float64)
    mask = np.asarray(inst["mask"], dtype=bool)
    return MatrixCompletion(M, mask, dense=True)


@raise_interrupts()  # a run cut short would be a wrong result: Ctrl-C propagates
def certify(
    problem: MatrixCompletion,
    *,
    alpha: float = 1e-32,
    seeds=(0, 1),
    eps: float = 1e-30,
    margin: float = 1e-3,
    t_max: float | None = None,
) -> dict:
    r"""Three independent numbers for one PSD completion instance.

    (a) GLRL limit: its loss (exact fit needs ``~0``), trace, KKT residuals;
    (b) minimum trace by :func:`~rankbias.baselines.min_nuclear_norm` with its duality gap;
    (c) gradient flow (``U U^T``, full width) at ``alpha`` from ``seeds``: distance to (a).
    ``certified`` requires: exact fit (loss <= 1e-12), ``tr(GLRL) - trace_min > margin``,
    duality gap < margin / 10, GF distance <= 1e-4 (and GF trace > trace_min + margin).
    """
    res = glrl(problem, eps=eps)
    W = res.matrix
    sol = min_nuclear_norm(problem, psd=True)
    d = problem.shape[0]
    model = SymmetricFactorization(d)
    tm = (
        t_max
        if t_max is not None
        else 20 * sum(np.log(1 / alpha) / (2 * p.lam) for p in res.phases) + 2000
    )
    gf = []
    for s in seeds:
        tr = gradient_flow(
            problem,
            model,
            model.init("gaussian", scale=alpha, seed=s),
            t_max=tm,
            rtol=1e-10,
            atol=min(1e-14, 1e-4 * np.sqrt(alpha)),
            n_save=50,
        )
        gf.append(
            dict(
                seed=int(s),
                distance=float(np.linalg.norm(tr.final_matrix - W)),
                trace=float(np.trace(tr.final_matrix)),
                loss=float(tr.loss[-1]),
                status=tr.status,
            )
        )
    tr_glrl = float(np.trace(W))
    excess = tr_glrl - sol.objective
    ok = (
        res.loss <= 1e-12
        and excess > margin
        and sol.duality_gap < margin / 10
        and all(g["distance"] <= 1e-4 and g["trace"] > sol.objective + margin for g in gf)
    )
    return dict(
        certified=bool(ok),
        glrl_trace=tr_glrl,
        glrl_loss=res.loss,
        glrl_rank=res.rank,
        glrl_kkt=res.kkt,
        min_trace=sol.objective,
        min_trace_dual=sol.dual_objective,
        duality_gap=sol.duality_gap,
        solver=sol.solver,
        solver_status=sol.status,
        min_trace_rank=int(np.sum(np.linalg.eigvalsh(sol.matrix) > 1e-6)),
        excess=excess,
        gf=gf,
        alpha=alpha,
    )


def search(
    out_dir: Path,
    n_trials: int = 40,
    seed: int = 0,
    *,
    d: int = 4,
    rank: int = 1,
    n_pairs: int = 6,
    margin: float = 1e-3,
    certify_top: int = 3,
) -> dict:
    r"""Random search over ``d x d`` PSD completions (rank-``rank`` truth ``G G^T``, ``n_pairs``
    observed symmetric pairs, same count for every trial so one compiled flow serves all).

    Screening: GLRL limit (exact fit) vs minimum trace; the ``certify_top`` largest excesses
    are then certified by :func:`certify`. Writes ``out_dir/counterexamples.json`` with every
    screened instance and the certificates, and returns that dict (``best`` = the best
    certified instance, with ``M`` and ``mask``).

    Raises:
        ValueError: ``n_trials < 1``, ``d < 2``, ``rank`` outside ``[1, d]``, ``n_pairs``
            outside ``[1, d(d+1)/2]``, ``margin`` not finite and > 0, ``certify_top < 0``,
            a negative ``seed``. Nothing is written then.
    """
    n_trials = check_int(n_trials, "n_trials", minimum=1)
    seed = check_int_seed(seed)  # stored in the JSON
    d = check_int(d, "d", minimum=2)
    rank = check_int(rank, "rank", minimum=1, maximum=d)
    n_pairs = check_int(n_pairs, "n_pairs", minimum=1)
    if n_pairs > d * (d + 1) // 2:
        raise ValueError(f"`n_pairs` must be <= d(d+1)/2 = {d * (d + 1) // 2}, got {n_pairs}")
    margin = check_positive(margin, "margin")
    certify_top = check_int(certify_top, "certify_top", minimum=0)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    screened = []
    t0 = time.perf_counter()
    for k in range(n_trials):
        prob = _random_instance(rng, d, rank, n_pairs)
        with quietly(RuntimeWarning):
            try:
                res = glrl(prob, eps=1e-30)
                sol = min_nuclear_norm(prob, psd=True)
            except RuntimeError:
                continue
        if res.loss > 1e-12:
            continue
        assert prob.dense_values is not None  # _random_instance builds a dense problem
        screened.append(
            dict(
                trial=k,
                M=np.asarray(prob.dense_values + 0).tolist(),
                mask=prob.mask.astype(int).tolist(),
                glrl_trace=float(np.trace(res.matrix)),
                min_trace=sol.objective,
                duality_gap=sol.duality_gap,
                excess=float(np.trace(res.matrix) - sol.objective),
            )
        )
    screened.sort(key=lambda r: -r["excess"])
    certs = []
    for inst in screened[:certify_top]:
        if inst["excess"] <= margin:
            break
        c = certify(instance_from_dict(inst), margin=margin)
        certs.append(dict(trial=inst["trial"], M=inst["M"], mask=inst["mask"], **c))
    best = next((c for c in certs if c["certified"]), None)
    out = dict(
        n_trials=n_trials,
        seed=seed,
        d=d,
        rank=rank,
        n_pairs=n_pairs,
        n_exact_fit=len(screened),
        n_excess=sum(r["excess"] > margin for r in screened),
        certificates=certs,
        best=best,
        wall_time=time.perf_counter() - t0,
    )
    atomic_write_text(out_dir / "counterexamples.json", json.dumps(out, indent=1, default=float))
    return out


def shipped_instance() -> MatrixCompletion:
    """The best certified instance found by :func:`search` (see ``SHIPPED``)."""
    if SHIPPED is None:
        raise RuntimeError("no shipped instance recorded")
    return instance_from_dict(SHIPPED)
