"""The gradient-flow engine, one job per module (internal; the public names are re-exported by
:mod:`rankbias.dynamics`):

* :mod:`.api`: :func:`gradient_flow` and :func:`gradient_flow_batch` (validation, runs);
* :mod:`.settings`: the options of a run resolved for its dtype and initial point;
* :mod:`.precision`: dtype defaults of the tolerances and the precision/resolution warnings;
* :mod:`.initial`: refusing an initial state that no run could integrate;
* :mod:`.save`: the record times;
* :mod:`.solvers`: the solver registry and the vector field;
* :mod:`.steady`: the steady-state stopping event;
* :mod:`.controller`: the step controller that ends a solve segment;
* :mod:`.segments`: one compiled solve segment and the loop over segments;
* :mod:`.result`: a finished solve as a :class:`~rankbias.Trajectory` with its status.

Data flows down this list's reverse: ``api`` builds the settings, solves segment after
segment and turns the output into a trajectory.
"""
