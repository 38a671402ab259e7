"""Gradient descent and optimizer training: the engine behind :func:`rankbias.gradient_descent`
and :func:`rankbias.train`, one job per module.

* :mod:`.grid`: the record steps (``save_steps``, ``save_at``) and their padding;
* :mod:`.settings`: the boundary checks of the settings GD and training share
  (:class:`~.settings.LoopSettings`);
* :mod:`.loop`: the compiled loop (:func:`~.loop.run`) that every step rule runs, and
  :class:`~.loop.LoopSpec`, one run's validated settings as the loop takes them;
* :mod:`.rules`: the gradient-descent step rule and ``lr_schedule``;
* :mod:`.sharpness`: the Hessian's largest eigenvalue (power iteration);
* :mod:`.stationarity`: how far from a stationary point a finished run ended;
* :mod:`.hints`: divergence and oscillation: :class:`DivergenceError` and the verified
  step-size hints;
* :mod:`.batching`: vmap or a loop of single runs, and the per-run results of a batch;
* :mod:`.api`: :func:`gradient_descent` and :func:`gradient_descent_batch`.

The optax rule and :func:`rankbias.train` live in :mod:`rankbias.dynamics._train`; the public
names are re-exported by :mod:`rankbias.dynamics`.
"""
