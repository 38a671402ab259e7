"""The ``rankbias`` command line: it parses, calls the library, and turns user mistakes into a
one-line error and a non-zero exit code (2: bad input; 1: a run or I/O failure; 130:
interrupted). Set ``RANKBIAS_DEBUG=1`` to see tracebacks.

    rankbias list
    rankbias run NAME|CONFIG.toml --out DIR [--set KEY=VALUE ...] [--quick]
                 [--executor inprocess|processes|dask] [--workers N] [--scheduler ADDR]
    rankbias status DIR [--verify]
    rankbias plot DIR [--figure NAME ...] [--stat median|mean]
    rankbias report DIR
    rankbias demo [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own message, our exit code
        self.print_usage(sys.stderr)
        print(f"rankbias: error: {message}", file=sys.stderr)
        sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    from .experiments.executors import EXECUTORS
    from .plots import FIGURES

    p = _Parser(prog="rankbias", description="Implicit low-rank bias experiments: named "
                "reproductions and parameter sweeps.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="named experiments, one line each")
    r = sub.add_parser("run", help="run a named experiment or a TOML config")
    r.add_argument("experiment", help="a name from `rankbias list`, or a path to a .toml file")
    r.add_argument("--out", required=True, help="results folder (created; re-runs resume)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. dynamics.t_max=100 or alphas=[1e-4,1e-8]")
    r.add_argument("--quick", action="store_true", help="the reduced version (reproductions)")
    r.add_argument("--executor", default="inprocess", choices=EXECUTORS)
    r.add_argument("--workers", type=int, default=None, help="worker processes")
    r.add_argument("--scheduler", default=None, help="Dask scheduler address, tcp://host:8786 "
                   "(default: start a LocalCluster)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--report", action="store_true", help="write report.html when done")
    s = sub.add_parser("status", help="done / pending / failed runs of a results folder")
    s.add_argument("dir")
    s.add_argument("--verify", action="store_true", help="also check every file's checksum")
    pl = sub.add_parser("plot", help="draw figures (PNG and SVG) into DIR/figures")
    pl.add_argument("dir")
    pl.add_argument("--figure", action="append", choices=FIGURES,
                    help="a figure (repeatable; default: all that apply)")
    pl.add_argument("--stat", default="median", choices=("median", "mean"),
                    help="summary over seeds: median with 25-75%% quantile band (default) or "
                    "mean with one std")
    rp = sub.add_parser("report", help="write the HTML report DIR/report.html")
    rp.add_argument("dir")
    ce = sub.add_parser("counterexample", help="nuclear-norm counter-examples (Li et al.)")
    ce_sub = ce.add_subparsers(dest="ce_command", required=True, parser_class=_Parser)
    cs = ce_sub.add_parser("search", help="search small PSD completions where the GF/GLRL limit "
                           "has a larger trace than the minimum; certify and write the hits")
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
    from .experiments import list_experiments

    exps = list_experiments()
    if not exps:
        print("no named experiments found")
        return 0
    w = max(len(e.name) for e in exps)
    for e in exps:
        print(f"{e.name:<{w}}  {e.kind:<12}  {e.description}")
    return 0


def _print_status(st: dict) -> None:
    line = f"{st['done']}/{st['total']} done, {st['pending']} pending, {st['failed']} failed"
    if st.get("corrupt"):
        line += f", {st['corrupt']} corrupt (re-run to repair)"
    print(line)


def _cmd_run(args) -> int:
    from .experiments import run_experiment

    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if args.scheduler and args.executor != "dask":
        raise ValueError("--scheduler needs --executor dask")
    st = run_experiment(args.experiment, args.out, overrides=args.set, quick=args.quick,
                        executor=args.executor, workers=args.workers, scheduler=args.scheduler,
                        progress=not args.no_progress and sys.stderr.isatty())
    if "results" in st:  # a reproduction
        print(f"{st['name']}: done in {st['wall_time']:.1f} s; summary in "
              f"{Path(args.out) / 'summary.json'}")
    else:
        _print_status(st)
        if st.get("failed"):
            print(f"some runs failed: `rankbias status {args.out}` lists them", file=sys.stderr)
    if args.report:
        from .report import write_report
        print(f"report: {write_report(args.out)}")
    return 1 if st.get("failed") or st.get("pending") else 0


def _cmd_status(args) -> int:
    import json

    from .store import Store

    st = Store(args.dir).status(verify=args.verify)
    _print_status(st)
    for key, p in list(st["failures"].items())[:20]:
        try:
            err = json.loads(Path(p).read_text()).get("error", "")
        except (OSError, ValueError):
            err = "(unreadable failure note)"
        print(f"  failed {key}: {err}")
    return 0


def _cmd_plot(args) -> int:
    from . import plots
    from .store import load

    ds = load(args.dir)
    out = Path(args.dir) / "figures"
    if args.figure:
        for f in args.figure:
            for p in plots.plot(ds, f, out, stat=args.stat):
                print(p)
    else:
        for paths in plots.plot_all(ds, out, stat=args.stat).values():
            for p in paths:
                print(p)
    return 0


def _cmd_report(args) -> int:
    from .report import write_report

    print(f"report: {write_report(args.dir)}")
    return 0


def _cmd_demo(args) -> int:
    from .experiments import run_experiment
    from .report import write_report

    print(f"running quick-demo into {args.out} ...", flush=True)
    st = run_experiment("quick-demo", args.out,
                        progress=not args.no_progress and sys.stderr.isatty())
    _print_status(st)
    path = write_report(args.out)
    print(f"figures: {Path(args.out) / 'figures'}")
    print(f"report: {path}")
    return 0


def _cmd_counterexample(args) -> int:
    from .counterexamples import search

    res = search(Path(args.out), n_trials=args.trials, seed=args.seed, d=args.size, rank=args.rank,
                 n_pairs=args.pairs, margin=args.margin, certify_top=args.certify)
    best = res.get("best")
    print(f"screened {args.trials} instances; results in {Path(args.out) / 'counterexamples.json'}")
    if not best:
        print("no certified counter-example in this search (try more --trials)")
        return 0
    print(f"best certified: GLRL trace {best.get('glrl_trace', float('nan')):.6g} > minimum trace "
          f"{best.get('min_trace', float('nan')):.6g} (excess {best.get('excess', float('nan')):.3g})")
    return 0


_COMMANDS = {"list": _cmd_list, "counterexample": _cmd_counterexample, "run": _cmd_run, "status": _cmd_status, "plot": _cmd_plot,
             "report": _cmd_report, "demo": _cmd_demo}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rankbias`` script; returns the exit code."""
    args = _parser().parse_args(argv)
    from .experiments import ConfigError, ExecutorError
    from .store import StoreError

    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("\ninterrupted: finished runs are saved; run the same command again to resume",
              file=sys.stderr)
        return 130
    except (ConfigError, ValueError) as e:
        if os.environ.get("RANKBIAS_DEBUG"):
            raise
        print(f"rankbias: error: {e}", file=sys.stderr)
        return 2
    except (StoreError, ExecutorError) as e:
        if os.environ.get("RANKBIAS_DEBUG"):
            raise
        print(f"rankbias: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        if os.environ.get("RANKBIAS_DEBUG"):
            raise
        what = f"{e.strerror} ({e.filename})" if e.strerror and e.filename else str(e)
        print(f"rankbias: error: {what}", file=sys.stderr)
        return 1


def run() -> None:
    """Console entry point (``rankbias``, ``python -m rankbias.cli``): ``sys.exit(main())``.

    After a Ctrl-C (exit code 130) it exits at once with ``os._exit``: the interrupt can land
    while JAX's threads are inside a computation, and the normal interpreter teardown then
    crashed (measured: SIGSEGV after the "interrupted" message, 1 try in 8). Finished runs are
    already on disk and executors were shut down while the interrupt unwound, so there is
    nothing left to flush but the standard streams. ``main`` itself returns normally, so
    in-process callers (notebooks, tests) are not killed.
    """
    code = main()
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
