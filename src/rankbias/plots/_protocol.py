"""What the figures read from one run: the :class:`RunRecord` protocol.

The figure code recognises a run by what it has, not by its class, and so never imports
:mod:`rankbias.trajectory`: data flows one way (engines -> :class:`~rankbias.Trajectory` ->
figures), and :meth:`rankbias.Trajectory.plot`, a convenience that forwards to
:func:`rankbias.plots.plot_trajectory` when called, closes no import cycle. A
:class:`~rankbias.Trajectory` satisfies the protocol, as does any object with these members.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import xarray as xr


@runtime_checkable
class RunRecord(Protocol):
    """One recorded run as the figures read it (the members of :class:`~rankbias.Trajectory`
    that :func:`~rankbias.plots.plot_trajectory` uses).

    ``times`` ``(T,)``; ``steps`` ``(T,)`` or ``None`` (gradient flow); ``final_matrix``
    ``(m, n)``; ``info`` (``"method"``, ``"dtype"``, ...); ``status`` (``info["status"]``);
    ``effective_rank(kind)`` ``(T,)``; ``to_xarray()`` the run as a one-run dataset."""

    # read-only members: a Trajectory is frozen
    @property
    def times(self) -> np.ndarray: ...

    @property
    def steps(self) -> np.ndarray | None: ...

    @property
    def final_matrix(self) -> np.ndarray: ...

    @property
    def info(self) -> dict: ...

    @property
    def status(self) -> str: ...

    def effective_rank(self, kind: str = "ratio") -> np.ndarray: ...

    def to_xarray(self) -> xr.Dataset: ...
