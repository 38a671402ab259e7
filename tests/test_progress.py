"""The progress line of a foreground run (issue 29): shown after 2 s of a fake clock, with
what the run reached; never for short runs; ``progress=`` validated at the boundary."""

from __future__ import annotations

import io

import pytest

import rankbias as rb
from rankbias.dynamics._interrupt import ChunkReport, raise_interrupts
from rankbias.dynamics._progress import Progress, progress_display, progress_line


class _Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_line_waits_for_two_seconds_then_says_how_far_the_run_got():
    clock, stream = _Clock(), io.StringIO()
    show = Progress(stream, clock=clock)
    show(ChunkReport("gradient_flow", 3.5, 1e4, 0.25, 1e-3, 2000))
    clock.t += 1.9  # a short run: nothing shown
    show(ChunkReport("gradient_flow", 7.0, 1e4, 0.2, 1e-3, 3000))
    assert show.text is None and show.live is None and stream.getvalue() == ""
    clock.t += 2.1  # 4 s in: 4000 steps at 1000 steps/s
    show(ChunkReport("gradient_flow", 50.0, 1e4, 0.125, 2e-3, 4000))
    assert (
        show.text
        == "gradient_flow: t = 50 / 1e+04 | loss 0.125 | |grad| 0.002 | 1,000 steps/s | 4.0 s"
    )
    assert show.live is not None
    show.close()
    assert show.live is None


def test_line_of_descent_and_glrl():
    gd = ChunkReport("gradient_descent", 1280, 3000, 0.5, float("nan"), 1280)
    assert progress_line(gd, 2.0, 640.0) == (
        "gradient_descent: step 1,280 / 3,000 | loss 0.5 | 640 steps/s | 2.0 s"
    )
    gl = ChunkReport("glrl", 2, 5, 0.1, float("nan"), 2)
    assert progress_line(gl, 4.0, 0.5).startswith("glrl: phase 2 / 5 | loss 0.1")


def test_auto_is_off_off_a_terminal_and_in_sweep_workers():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    with progress_display(None, io.StringIO()) as d:
        assert d is None  # not a terminal
    with progress_display(None, Tty()) as d:
        assert isinstance(d, Progress)
    with raise_interrupts(), progress_display(None, Tty()) as d:
        assert d is None  # a sweep worker
    with progress_display(True, io.StringIO()) as d:
        assert isinstance(d, Progress)
    with progress_display(False, Tty()) as d:
        assert d is None


def test_bad_progress_argument_is_named():
    M = rb.random_low_rank(shape=(4, 4), rank=1, psd=True, seed=0)
    prob = rb.MatrixCompletion.uniform(M, fraction=0.7, seed=0, symmetric=True)
    model = rb.DeepFactorization(shape=(4, 4), depth=2)
    p0 = model.init("gaussian", scale=1e-3, seed=0)
    for call in (
        lambda: rb.gradient_flow(prob, model, p0, progress="yes"),  # pyright: ignore
        lambda: rb.gradient_descent(prob, model, p0, lr=0.1, steps=10, progress=1),  # pyright: ignore
        lambda: rb.train(prob, model, p0, "sgd", lr=0.1, steps=10, progress="on"),  # pyright: ignore
        lambda: rb.glrl(rb.MatrixEstimation(M), progress="on"),  # pyright: ignore
    ):
        with pytest.raises(TypeError, match="`progress`"):
            call()
