r"""What to do about a run that diverged or oscillated: :class:`DivergenceError` and the
step-size hints, verified by rerunning the whole run at the proposed step (:class:`Rerun`).

A hint starts from ``2 / sharpness`` measured before the blow-up (or half of ``lr``) and is
lowered until a rerun neither diverges nor oscillates: the sharpness grows along a run, so
its value at one point is no stable step for the whole run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from .loop import LoopSpec
from .sharpness import sharp as _sharp
from .stationarity import loop_stationarity

__all__ = ["DivergenceError", "Rerun", "check_divergence", "end_stationarity"]


class DivergenceError(ValueError):
    """Gradient descent diverged; ``step``, ``loss`` and ``lr_hint`` say where and what to do."""

    def __init__(
        self, msg, *, step: int, loss: float, lr_hint: float | None, index: int | None = None
    ):
        super().__init__(msg)
        self.step, self.loss, self.lr_hint, self.index = step, loss, lr_hint, index


#: :func:`_verified_lr`: how many step sizes it tries (each a rerun of the whole run).
_HINT_TRIES = 5


def _verified_lr(candidate: float, rerun, problem, model) -> tuple[float, bool]:
    """Lower ``candidate`` until a rerun of the run at it neither diverges nor oscillates.

    The sharpness grows along a run (near the solution of a deep factorization it is
    ``~2 L sigma_1^(2 - 2/L)``), so ``2 / sharpness`` at the start or before a blow-up is
    no stable step for the whole run; the only honest check is the run itself. A failed try
    goes on from ``min(0.95 * 2 / sharpness, 0.7 * candidate)`` measured where that try
    failed (before its blow-up, or at its end). ``rerun(lr) -> (loop output, stationarity)``.
    Returns ``(lr, verified)`` after at most :data:`_HINT_TRIES` reruns.
    """
    use_s = getattr(rerun, "sharpness", True)
    for _ in range(_HINT_TRIES):
        out, stat = rerun(candidate)
        bad = bool(out["bad"])
        if not bad and stat["verdict"] != "oscillating":
            return candidate, True
        s = _sharp(problem, model, out["good"] if bad else out["params"]) if use_s else np.nan
        nxt = 0.95 * 2.0 / s if np.isfinite(s) and s > 0 else np.inf
        candidate = float(min(nxt, 0.7 * candidate))
    return candidate, False


def _divergence_message(
    what, step, loss, lr, problem, model, params0, good, good_step, index, rerun=None, steps=None
):
    """The error for a diverged run and its ``lr_hint``.

    Without ``rerun``: ``2 / sharpness`` at the last iterate whose loss had not risen
    (``good``, step ``good_step``; the start if it rose at once), not at the blown-up state,
    whose curvature is meaningless. With ``rerun`` (gradient descent): that value (or half
    of ``lr`` if ``lr`` was below it) lowered by :func:`_verified_lr` until a run of all
    ``steps`` at it neither diverges nor oscillates: a hint that holds for the whole run.
    """
    which = "" if index is None else f" (run {index} of the batch)"
    msg = f"{what} diverged at step {step}{which}: loss = {loss:.4g}" + (
        "" if lr is None else f" with lr = {lr:g}"
    )

    def sharp(p):
        return _sharp(problem, model, p)

    s_good = sharp(good)
    where = (
        "at the start" if good_step == 0 else f"at step {good_step} (the last before the loss rose)"
    )
    if rerun is not None and lr is not None:
        known = rerun.sharpness and np.isfinite(s_good) and s_good > 0
        stable = 2.0 / s_good if known else np.inf
        first = 0.95 * stable if lr >= 0.95 * stable else 0.5 * lr
        hint, ok = _verified_lr(float(first), rerun, problem, model)
        grew = hint < first  # lowered by the reruns: the sharpness grew along the run
        seen = (
            f"; {where} rb.sharpness is {s_good:.4g} (2 / sharpness = {stable:.4g})"
            + (", and it grows along the run" if grew else "")
            if known
            else ""
        )
        if ok:
            return (
                msg + f"{seen}: take lr <= {hint:.3g} (a run at lr = {hint:.3g} ran all "
                f"{steps} steps without diverging or oscillating)"
            ), hint
        return (
            msg + f"{seen}: take lr below {hint:.3g} (not verified: runs at the "
            f"{_HINT_TRIES} larger steps tried still diverged or oscillated)"
        ), hint
    if not (np.isfinite(s_good) and s_good > 0):
        return msg + "; pick lr below 2 / rb.sharpness(problem, model, params)", None
    stable = 2.0 / s_good
    if lr is None or lr >= 0.95 * stable:
        hint = 0.95 * stable
        start = (
            "" if good_step == 0 or params0 is None else f" (at the start: {sharp(params0):.4g})"
        )
        return (
            msg + f"; {where} the sharpness is {s_good:.4g}{start}, so GD is stable there only "
            f"for lr < 2 / sharpness = {stable:.4g}: take lr < {hint:.3g} (measure it with "
            f"rb.sharpness(problem, model, params))"
        ), hint
    return (
        msg + f"; lr is below 2 / sharpness = {stable:.4g} {where}, so the sharpness grew "
        f"after it: lower lr, or measure rb.sharpness(problem, model, params) at later "
        f"iterates (a shorter run's final_params)"
    ), None


def check_divergence(
    out, problem, model, what: str, lr: float | None, index=None, params0=None, rerun=None
) -> None:
    """Raise :class:`DivergenceError` if the loop ``out`` stopped on divergence.

    ``what`` names the method in the message (``"gradient descent"``, ``"training with adam"``).
    ``rerun`` (``lr -> (loop output, stationarity)``): verify the hint by rerunning
    (:func:`_verified_lr`).
    """
    if not bool(out["bad"]):
        return
    step, loss = int(out["bad_step"]), float(out["bad_loss"])
    msg, hint = _divergence_message(
        what,
        step,
        loss,
        lr,
        problem,
        model,
        params0,
        out["good"],
        int(out["good_step"]),
        index,
        rerun,
        None if rerun is None else rerun.steps,
    )
    raise DivergenceError(msg, step=step, loss=loss, lr_hint=hint, index=index)


def end_stationarity(
    out, rec_steps, problem, model, rerun, first_lr: Callable[[], float | None], monotone=True
) -> tuple[str, dict[str, Any]]:
    """``(status, stationarity)`` of a finished run: :func:`loop_stationarity`, and for an
    oscillating run the verified stable step from ``first_lr()`` (called only then, as it may
    measure a sharpness; ``None`` or no ``rerun``: no step to offer)."""
    stat = loop_stationarity(out, rec_steps, monotone)
    status = stat.pop("status")
    if stat["verdict"] == "oscillating":
        stat["lr_hint"], stat["lr_verified"] = None, False
        first = first_lr() if rerun is not None else None
        if first is not None:
            stat["lr_hint"], stat["lr_verified"] = _verified_lr(first, rerun, problem, model)
    return status, stat


class Rerun:
    """``lr -> (loop output, stationarity)``: the same run (GD or an optimizer whose
    ``hyper`` holds ``"lr"``) at another ``lr``, by the single run's compiled program
    (``spec``); for the step-size hints. ``data_fn`` is called on the first rerun only (most
    runs need none). ``sharpness``: whether ``2 / sharpness`` bounds the step (plain GD, sgd),
    else the hint search only lowers ``lr`` (:func:`_verified_lr`)."""

    def __init__(
        self,
        data_fn,
        params,
        spec: LoopSpec,
        hyper: dict,
        *,
        monotone: bool = True,
        sharpness: bool = True,
    ):
        self.data_fn, self.data = data_fn, None
        self.params, self.spec, self.hyper = params, spec, hyper
        self.rec_steps, self.steps = spec.rec_steps, spec.steps
        self.monotone, self.sharpness = monotone, sharpness

    def __call__(self, lr: float):
        if self.data is None:
            self.data = self.data_fn()
        hyper = dict(self.hyper, lr=jnp.asarray(lr, self.spec.dtype))
        out = self.spec.run(self.data, self.params, hyper)
        bad = bool(out["bad"])
        return out, (None if bad else loop_stationarity(out, self.rec_steps, self.monotone))
