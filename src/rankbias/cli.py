"""The ``rankbias`` command line: it parses, calls the library, and turns user mistakes into a
one-line error and a non-zero exit code. Set ``RANKBIAS_DEBUG=1`` to see tracebacks.

Exit codes (every command; ``EXIT_*`` below):

====  ======================================================================================
0     success; for ``run``/``status``: every run of the sweep is done. Runs that ended
      without a steady state (``t_max``, ``max_steps``, ...) are results, not failures:
      they are counted on stdout ("k done runs did not end well: ...") and keep code 0
1     failure: a run raised (``failed``), a store, executor or I/O error, or ``status
      --verify`` found corrupt or unreadable run files
2     bad input: an argument, a config, a folder that holds another experiment
3     pending: ``run``/``status`` of a sweep with runs still to do and none failed, or with
      runs made by an older results version (``rankbias run`` again resumes or recomputes)
130   interrupted (Ctrl-C); 143: terminated (SIGTERM)
====  ======================================================================================

    rankbias --version
    rankbias list
    rankbias run NAME|CONFIG.toml --out DIR [--set KEY=VALUE ...] [--quick] [--add]
                 [--executor inprocess|processes|dask] [--workers N] [--scheduler ADDR]
    rankbias status DIR [--verify]
    rankbias plot DIR [--figure NAME ...] [--stat median|mean]
    rankbias report DIR
    rankbias demo [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

__all__ = ["main", "run"]

_LINE = 400  # longest message line printed: values from the user are never echoed whole

EXIT_OK = 0
EXIT_FAILURE = 1  # a run failed, a store/executor/I/O error, corrupt files (status --verify)
EXIT_USAGE = 2  # bad input
EXIT_PENDING = 3  # a sweep with runs still pending (and none failed)

_EXIT_EPILOG = (
    "exit codes: 0 every run done (runs that ended without a steady state are counted "
    "in the output, not an error); 1 failed runs, or with --verify corrupt or unreadable run files; "
    "2 bad input; 3 runs still pending, or made by an older results version (`rankbias run` resumes)"
)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that executors shut down and reap their workers."""


def _on_sigterm(signum, frame):
    raise Terminated()


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own message, our exit code
        self.print_usage(sys.stderr)
        print(f"rankbias: error: {message}", file=sys.stderr)
        sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    from ._version import __version__
    from .experiments.executors import EXECUTORS
    from .plots.sweep import FIGURES

    p = _Parser(
        prog="rankbias",
        description="Implicit low-rank bias experiments: named reproductions and parameter sweeps.",
    )
    p.add_argument("--version", action="version", version=f"rankbias {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="named experiments, one line each")
    r = sub.add_parser("run", help="run a named experiment or a TOML config", epilog=_EXIT_EPILOG)
    r.add_argument("experiment", help="a name from `rankbias list`, or a path to a .toml file")
    r.add_argument("--out", required=True, help="results folder (created; re-runs resume)")
    r.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. dynamics.t_max=100 or alphas=[1e-4,1e-8]",
    )
    r.add_argument(
        "--data",
        default=None,
        metavar="PATH",
        help="a ratings file for experiments that read one (movielens): the same as "
        "--set params.path=PATH",
    )
    r.add_argument(
        "--quick",
        action="store_true",
        help="the reduced version (a reproduction's "
        "quick mode, a sweep's [quick] table; an error if the sweep has none)",
    )
    r.add_argument(
        "--add",
        "--force",
        dest="add",
        action="store_true",
        help="run into a folder that holds another config of a sweep (both configs "
        "are recorded in its experiment.json); without it such a folder is refused",
    )
    r.add_argument("--executor", default="inprocess", choices=EXECUTORS)
    r.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (a sweep's --executor processes/dask; a reproduction "
        "that runs its runs in processes, e.g. arora2019-completion)",
    )
    r.add_argument(
        "--scheduler",
        default=None,
        help="Dask scheduler address, tcp://host:8786 (default: start a LocalCluster)",
    )
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--report", action="store_true", help="write report.html when done")
    s = sub.add_parser(
        "status",
        help="done / pending / failed runs of a results folder, and how the done ones ended",
        epilog=_EXIT_EPILOG,
    )
    s.add_argument("dir")
    s.add_argument(
        "--verify",
        action="store_true",
        help="also read every run file and check its "
        "checksum and key (exit 1 if any is corrupt or unreadable)",
    )
    pl = sub.add_parser("plot", help="draw figures (PNG and SVG) into DIR/figures")
    pl.add_argument("dir")
    pl.add_argument(
        "--figure",
        action="append",
        choices=FIGURES,
        help="a figure (repeatable; default: all that apply)",
    )
    pl.add_argument(
        "--stat",
        default="median",
        choices=("median", "mean"),
        help="summary over seeds: median with 25-75%% quantile band (default) or mean with one std",
    )
    rp = sub.add_parser("report", help="write the HTML report DIR/report.html")
    rp.add_argument("dir")
    ce = sub.add_parser("counterexample", help="nuclear-norm counter-examples (Li et al.)")
    ce_sub = ce.add_subparsers(dest="ce_command", required=True, parser_class=_Parser)
    cs = ce_sub.add_parser(
        "search",
        help="search small PSD completions where the GF/GLRL limit "
        "has a larger trace than the minimum; certify and write the hits",
    )
    cs.add_argument("--out", required=True, help="folder for counterexamples.json")
    cs.add_argument("--trials", type=int, default=40)
    cs.add_argument("--seed", type=int, default=0)
    cs.add_argument("--size", type=int, default=4, help="matrix size d")
    cs.add_argument("--rank", type=int, default=1, help="rank of the PSD truth")
    cs.add_argument("--pairs", type=int, default=6, help="observed symmetric pairs")
    cs.add_argument("--margin", type=float, default=1e-3, help="trace excess that counts as a hit")
    cs.add_argument("--certify", type=int, default=3, help="how many of the best to certify")
    d = sub.add_parser("demo", help="run the quick-demo sweep and write its report (~1 min)")
    d.add_argument("--out", default="results/demo")
    d.add_argument("--no-progress", action="store_true")
    return p


def _cmd_list(args) -> int:
    from .experiments.registry import list_experiments

    exps = list_experiments()
    if not exps:
        print("no named experiments found")
        return 0
    w = max(len(e.name) for e in exps)
    for e in exps:
        print(f"{e.name:<{w}}  {e.kind:<12}  {e.description}")
    return 0


def _print_status(st: dict) -> None:
    from .status import describe, ended_well

    line = f"{st['done']}/{st['total']} done, {st['pending']} pending, {st['failed']} failed"
    if st.get("corrupt"):
        line += f", {st['corrupt']} corrupt (`rankbias run` again deletes and re-runs them)"
    if st.get("unreadable"):
        line += f", {st['unreadable']} unreadable (kept; check their permissions)"
    if st.get("stale"):
        line += (
            f", {st['stale']} made by an older results version (their code changed what they "
            f"compute: `rankbias run` recomputes them)"
        )
    bad = {k: n for k, n in st.get("statuses", {}).items() if not ended_well(k)}
    if bad:
        # on the first line, so that `| head -1` and logs cannot show "done" alone
        line += f"; {sum(bad.values())} done run(s) did not end well: " + ", ".join(
            f"{n} {k or 'no status'}" for k, n in bad.items()
        )
    print(line)
    for k, n in bad.items():
        print(f"  {n} {k or 'no status'}: {describe(k) if k else 'the run file records none'}")
    if st.get("earlier_configs"):
        print(
            f"(this folder also holds the runs of {st['earlier_configs']} earlier config(s), "
            f"added with --add; see 'history' in experiment.json)"
        )


def _log(msg: str) -> None:
    print(msg, flush=True)


def _cmd_run(args) -> int:
    # the package's name, not registry's: tests replace rankbias.experiments.run_experiment
    from .experiments import run_experiment

    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if args.scheduler and args.executor != "dask":
        raise ValueError("--scheduler needs --executor dask")
    overrides = list(args.set)
    if args.data is not None:
        overrides.append(f"params.path={json.dumps(str(args.data))}")
    st = run_experiment(
        args.experiment,
        args.out,
        overrides=overrides,
        quick=args.quick,
        executor=args.executor,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=not args.no_progress and sys.stderr.isatty(),
        add=args.add,
        log=_log,
    )
    if "results" in st:  # a reproduction
        print(
            f"{st['name']}: done in {st['wall_time']:.1f} s; summary in "
            f"{Path(args.out) / 'summary.json'}"
        )
    else:
        _print_status(st)
        if st.get("failed"):
            print(f"some runs failed: `rankbias status {args.out}` lists them", file=sys.stderr)
    if args.report:
        from .report import write_report

        print(f"report: {write_report(args.out)}")
    return _exit_code(st) if "results" not in st else EXIT_OK


def _exit_code(st: dict) -> int:
    """The exit code of a sweep's status (see the module docstring)."""
    if st.get("failed") or st.get("corrupt") or st.get("unreadable"):
        return EXIT_FAILURE
    if st.get("lost_chunks_runs"):  # an executor lost their results: a failure, not pending
        return EXIT_FAILURE
    if st.get("pending") or st.get("stale"):  # stale runs are recomputed by the next run
        return EXIT_PENDING
    return EXIT_OK


def _cmd_status(args) -> int:
    import json

    from .store import Store

    store = Store(args.dir)
    st = store.status(verify=args.verify)
    _print_status(st)
    for key, p in list(st["failures"].items())[:20]:
        try:
            err = json.loads(Path(p).read_text()).get("error", "")
        except (OSError, ValueError):
            err = "(unreadable failure note)"
        print(f"  failed {key}: {_cut(str(err))}")
    for what in ("corrupt", "unreadable"):
        for key in st.get(f"{what}_keys", [])[:20]:
            print(f"  {what} {store.path(key)}")
    return _exit_code(st)


def _cmd_plot(args) -> int:
    from . import plots
    from .store import load

    ds = load(args.dir)
    out = Path(args.dir) / "figures"
    drawn = 0
    if args.figure:
        for f in args.figure:
            for p in plots.plot(ds, f, out, stat=args.stat):
                print(p)
                drawn += 1
    else:
        for paths in plots.plot_all(ds, out, stat=args.stat).values():
            for p in paths:
                print(p)
                drawn += 1
    if not drawn:
        from .store import Store

        metrics = ", ".join(Store(args.dir).manifest().get("metrics", [])) or "none"
        print(
            f"rankbias: error: no figure applies to {args.dir} (no figure can be drawn from "
            f"the metrics it recorded: {metrics}); record loss, singular_values or "
            f"effective_rank in [record] metrics",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_report(args) -> int:
    from .report import write_report

    print(f"report: {write_report(args.dir)}")
    return 0


def _cmd_demo(args) -> int:
    from .experiments.registry import run_experiment
    from .report import write_report

    print(f"running quick-demo into {args.out} ...", flush=True)
    st = run_experiment(
        "quick-demo", args.out, progress=not args.no_progress and sys.stderr.isatty()
    )
    _print_status(st)
    path = write_report(args.out)
    print(f"figures: {Path(args.out) / 'figures'}")
    print(f"report: {path}")
    return 0


def _check_counterexample_args(args) -> None:
    """The search's flags, checked under their own names (the library's messages name its
    arguments, `d` for --size); nothing is written when one is bad."""
    import math

    for flag, value, low in (("--trials", args.trials, 1), ("--size", args.size, 2)):
        if value < low:
            raise ValueError(f"{flag} must be >= {low}, got {value}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if not 1 <= args.rank <= args.size:
        raise ValueError(
            f"--rank must be in [1, --size] = [1, {args.size}] (a rank-r truth of size d "
            f"needs r <= d), got {args.rank}"
        )
    pairs = args.size * (args.size + 1) // 2
    if not 1 <= args.pairs <= pairs:
        raise ValueError(
            f"--pairs must be in [1, d(d+1)/2] = [1, {pairs}] for --size {args.size}, "
            f"got {args.pairs}"
        )
    if not (math.isfinite(args.margin) and args.margin > 0):
        raise ValueError(f"--margin must be a finite number > 0, got {args.margin}")
    if args.certify < 0:
        raise ValueError(f"--certify must be >= 0 (how many to certify), got {args.certify}")


def _cmd_counterexample(args) -> int:
    from .counterexamples import search

    _check_counterexample_args(args)
    res = search(
        Path(args.out),
        n_trials=args.trials,
        seed=args.seed,
        d=args.size,
        rank=args.rank,
        n_pairs=args.pairs,
        margin=args.margin,
        certify_top=args.certify,
    )
    best = res.get("best")
    print(f"screened {args.trials} instances; results in {Path(args.out) / 'counterexamples.json'}")
    if not best:
        print("no certified counter-example in this search (try more --trials)")
        return 0
    print(
        f"best certified: GLRL trace {best.get('glrl_trace', float('nan')):.6g} > minimum trace "
        f"{best.get('min_trace', float('nan')):.6g} (excess {best.get('excess', float('nan')):.3g})"
    )
    return 0


_COMMANDS = {
    "list": _cmd_list,
    "counterexample": _cmd_counterexample,
    "run": _cmd_run,
    "status": _cmd_status,
    "plot": _cmd_plot,
    "report": _cmd_report,
    "demo": _cmd_demo,
}


def _cut(text: str) -> str:
    """Each line cut to ``_LINE`` characters."""
    return "\n".join(
        line if len(line) <= _LINE else f"{line[: _LINE - 30]}... ({len(line)} characters)"
        for line in text.splitlines() or [""]
    )


def _error(e: BaseException, code: int) -> int:
    if os.environ.get("RANKBIAS_DEBUG"):
        raise e
    if isinstance(e, OSError) and not isinstance(e, (ConnectionError, TimeoutError)):
        name = str(e.filename)
        name = name if len(name) <= 200 else f"{name[:170]}... ({len(name)} characters)"
        what = f"{e.strerror} ({name})" if e.strerror and e.filename else str(e)
    else:
        what = str(e)
    print(f"rankbias: error: {_cut(what)}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rankbias`` script; returns the exit code.

    Exit codes: 0 success; 2 bad input (argument, config, a folder that holds another
    experiment); 1 a run, store, executor or I/O failure (failed runs; ``status --verify``
    with corrupt or unreadable runs); 3 a sweep with runs still pending (``run``,
    ``status``); 130 interrupted (Ctrl-C); 143 terminated (SIGTERM). See the module
    docstring for the table.
    In the main thread SIGTERM is handled like Ctrl-C while the command runs (the previous
    handler is restored on return), so workers are stopped and reaped either way.
    """
    from ._startup import release

    release()  # the startup guard's handlers (rankbias/__init__.py) give way to ours
    main_thread = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        return _main(argv)
    except KeyboardInterrupt as e:  # also during the imports and argument parsing
        what = "terminated" if isinstance(e, Terminated) else "interrupted"
        print(
            f"\n{what}: finished runs are saved; run the same command again to resume",
            file=sys.stderr,
        )
        return 143 if isinstance(e, Terminated) else 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, old_term)


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    from .experiments.errors import ConfigError
    from .experiments.executors import ExecutorError
    from .experiments.registry import ReproductionError
    from .store._errors import StoreError

    try:
        return _COMMANDS[args.command](args)
    except (ConfigError, ValueError) as e:
        return _error(e, 2)
    except (StoreError, ExecutorError, ReproductionError) as e:
        return _error(e, 1)
    except BrokenPipeError:  # `rankbias list | head`: the reader left, nothing to say
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), sys.stdout.fileno())
        return 0
    except OSError as e:
        return _error(e, 1)


def _exit_now(signum, frame):  # pragma: no cover - runs in the console entry's teardown
    sys.stderr.write("\nrankbias: interrupted while exiting (the command had finished)\n")
    sys.stderr.flush()
    os._exit(130 if signum == signal.SIGINT else 143)


def run() -> None:
    """Console entry point (``rankbias``, ``python -m rankbias``): ``sys.exit(main())``.

    After an interrupt (exit code 130 or 143) it exits at once with ``os._exit``: the
    interrupt can land while JAX's threads are inside a computation, and the normal
    interpreter teardown then crashed (measured: SIGSEGV after the "interrupted" message, 1
    try in 8). Finished runs are already on disk and executors were shut down (workers
    terminated and reaped) while the interrupt unwound, so there is nothing left to flush
    but the standard streams. A Ctrl-C or SIGTERM that lands in the teardown after a
    finished command exits at once with 130/143 and one line instead of an ``atexit``
    traceback, and after the last ``atexit`` handler the process ends with ``os._exit``
    (:func:`rankbias._startup.finish`): CPython's own teardown runs with default signal
    handlers, where a Ctrl-C killed the process silently. ``main`` itself returns normally, so in-process callers are not killed.
    """
    from ._startup import finish

    code = main()
    signal.signal(signal.SIGINT, _exit_now)
    signal.signal(signal.SIGTERM, _exit_now)
    finish(code)  # after the atexit handlers: os._exit(code), not CPython's teardown
    sys.stdout.flush()
    sys.stderr.flush()
    if code in (130, 143):
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
