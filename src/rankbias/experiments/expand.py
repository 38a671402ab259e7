"""From a validated sweep config to its runs: fill in the defaults, expand the grid, check each
run whole, and key each run by the hash of what it uses.

A run's key (:func:`rankbias.store.run_key`) hashes its config with the defaults filled in and
the keys it does not use left out (:func:`_normalise_run`), so that a stored sweep resumes with
nothing recomputed as long as these rules and the defaults hold.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path

from .._validation import check_shape
from ..dynamics.flow.precision import flow_defaults
from ..optimizers import OPTIMIZERS, check_hyperparams
from ..problems.splits import load_ratings
from ..store import run_key
from .errors import ConfigError, _Errors, short
from .overrides import zip_list
from .schema import ALIASES, DEFAULT_BATCH, DYNAMICS, HYPER, SCHEMA, SECTIONS_UNUSED, SHORT, spec
from .validate import check_custom, check_value, resolve_key, validate

__all__ = ["Axis", "RunSpec", "Sweep", "expand", "LEGACY_DEFAULTS"]


@dataclass(frozen=True)
class Axis:
    """One dimension of a sweep: ``name`` (dataset dimension), the config ``keys`` it sets
    (several for a zipped group), and one tuple of values per key."""

    name: str
    keys: tuple[str, ...]
    values: tuple[tuple, ...]

    def __len__(self) -> int:
        return len(self.values[0])


@dataclass(frozen=True)
class RunSpec:
    """One run: its resolved config (``problem``, ``model``, ``init``, ``dynamics``,
    ``record``; a GLRL run has no ``model`` nor ``init``), its position in the sweep grid and
    its content hash."""

    config: dict
    index: tuple[int, ...]
    key: str


@dataclass
class Sweep:
    """A validated sweep: the base config, its axes and the expanded runs (grid order)."""

    name: str
    description: str
    base: dict
    axes: list[Axis]
    runs: list[RunSpec] = field(default_factory=list)
    chunk_size: int = 8  # runs per vmapped chunk; see DEFAULT_BATCH
    raw: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a) for a in self.axes)


#: Dynamics keys added to the schema after sweeps were stored, with the default at which
#: they are left out of the run key (that of every run stored before them).
_KEY_NEUTRAL = {
    "backend": "auto",
    "curvature_tol": None,
    "certificate_tol": None,
    "divergence_factor": 1e8,
    "dtype": None,
    "save_spacing": "log",
    "save_at": None,
}

#: Defaults of the schema before this version, by key. A results folder whose runs were keyed
#: with them is resumed with them (``expand(raw, defaults=LEGACY_DEFAULTS)``, see
#: :func:`rankbias.experiments.registry.run_experiment`), never silently re-computed.
LEGACY_DEFAULTS: dict[str, object] = {"dynamics.n_save": 100}


def _defaults(raw: dict, defaults: dict | None = None) -> dict:
    """The base config with every default filled in (no sweep), a dynamics key at its
    method's default; ``defaults`` (dotted keys) replace the schema's."""
    defaults = defaults or {}
    method = raw.get("dynamics", {}).get("method", "flow")
    base = {}
    for sec, keys in SCHEMA.items():
        given = raw.get(sec, {})
        base[sec] = {}
        for k in keys:
            t, d, chk = spec(sec, k, method)
            base[sec][k] = (
                check_value(f"{sec}.{k}", t, chk, given[k])
                if given.get(k) is not None
                else copy.deepcopy(defaults.get(f"{sec}.{k}", d))
            )
    return base


def _axis_name(key: str) -> str:
    full = ALIASES.get(key, key)
    return key if key in ALIASES else SHORT.get(full, full.replace(".", "_"))


def _normalise_problem(p: dict) -> None:
    if p["type"] == "ratings":
        for k in ("rank", "psd", "spectrum", "fraction", "noise"):
            p.pop(k)
    else:
        p.pop("path")
        p.pop("test_fraction")
    if p["type"] not in ("completion", "ratings"):
        p.pop("fraction")
    if p["type"] not in ("sensing", "regression"):  # regression: measurements = samples n
        p.pop("measurements")
    if p["type"] == "completion":
        p.pop("noise")
    if p["type"] == "regression":  # a k-sparse truth: rank = k, no psd or spectrum
        p.pop("psd")
        p.pop("spectrum")
    if p["type"] not in ("completion", "ratings") or p.get("normalization", "sum") == "sum":
        p.pop("normalization", None)  # added after runs were stored: in the key only at "mean"


def _dynamics_used(d: dict) -> set[str]:
    """The dynamics keys a run of ``d["method"]`` reads: its option class's, of the optax
    keys only the chosen optimizer's hyper-parameters (and ``batch_seed`` with minibatches)."""
    used = {"method", *DYNAMICS[d["method"]]}
    if d["method"] == "optax":
        used -= {*HYPER, "batch_seed"}
        used |= set(OPTIMIZERS[d["optimizer"]].defaults)
        used |= {"batch_seed"} if d["batch_size"] else set()
    return used


def _normalise_dynamics(d: dict) -> None:
    # Keys added to the schema after the first stored sweeps enter the key only when set to
    # something else than their default: the runs stored before keep their keys.
    for k, default in _KEY_NEUTRAL.items():
        if d.get(k, default) == default:
            d.pop(k, None)
    if d.get("dtype") == "float64":
        d.pop("dtype")
    if d["method"] == "flow":
        # the dtype's defaults, resolved: a float64 run's key holds rtol = 1e-8 and
        # gtol = 1e-10, as when these were the schema's defaults
        tol = flow_defaults(d.get("dtype") or "float64")
        if d["rtol"] is None:
            d["rtol"] = tol["rtol"]
        if d["gtol"] == "auto":
            d["gtol"] = tol["gtol"]
    used = _dynamics_used(d)
    for k in [k for k in d if k not in used]:
        d.pop(k)  # another method's key (validate refuses them; here: their defaults)


def _normalise_run(cfg: dict) -> dict:
    """Drop the keys a run does not use, so that they do not change its hash."""
    cfg = copy.deepcopy(cfg)
    d, i, m = cfg["dynamics"], cfg["init"], cfg["model"]
    _normalise_problem(cfg["problem"])
    _normalise_dynamics(d)
    if i["name"] != "perturbed_identity":
        i.pop("beta")
    if m["type"] == "diagonal":  # no hidden width; its scale is per weight (no per_factor)
        m.pop("width")
        i.pop("per_factor")
    else:  # model.form came with diagonal networks: the other models' keys stay as they were
        m.pop("form")
    if m["type"] == "symmetric" and m["depth"] == 2:
        # depth 2 (W = U U^T) was the only symmetric model when depth was ignored for it:
        # its runs keep their keys; a deeper one (W = P P^T) is another model, in its key.
        m.pop("depth")
    for sec in SECTIONS_UNUSED.get(d["method"], ()):
        cfg.pop(sec)
    return cfg


def _check_truth(p: dict, m: dict, where: str) -> None:
    mm, nn = p["shape"]
    out = []
    if p["rank"] > min(mm, nn):
        out.append(f"{where}problem.rank={p['rank']} exceeds min(problem.shape)={min(mm, nn)}")
    if p.get("type") != "ratings":  # a generated truth is a dense (m, n) matrix
        try:  # refused here, before the folder is written, not in the first run
            check_shape(p["shape"], "problem.shape", dense=True)
        except ValueError as e:
            out.append(f"{where}{e}")
    if p["psd"] and mm != nn:
        out.append(f"{where}problem.psd = true needs a square problem.shape, got {p['shape']}")
    if m["type"] == "symmetric" and mm != nn:
        out.append(
            f"{where}model.type = 'symmetric' needs a square problem.shape, got {p['shape']}"
        )
    if m["type"] == "symmetric" and not p["psd"]:
        out.append(f"{where}model.type = 'symmetric' needs problem.psd = true")
    if m["type"] == "symmetric" and m["depth"] % 2:
        out.append(
            f"{where}model.depth = {m['depth']} is odd: model.type = 'symmetric' (W = P P^T) "
            f"needs an even depth; for an odd depth use model.type = 'deep' (psd = true)"
        )
    if p.get("spectrum") is not None and len(p["spectrum"]) != p["rank"]:
        out.append(
            f"{where}problem.spectrum has {len(p['spectrum'])} values, "
            f"expected problem.rank={p['rank']}"
        )
    if out:
        raise ConfigError(errors=out)


_DIAGONAL_INITS = ("uniform", "zhao", "gaussian")


def _check_diagonal(cfg: dict, where: str) -> None:
    """A diagonal network on a regression (``problem.shape = [d, 1]``, ``rank = k <= d``
    nonzeros, ``measurements = n`` samples): the two go together."""
    p, m, i, out = cfg["problem"], cfg["model"], cfg["init"], []
    if p["type"] != "regression" or m["type"] != "diagonal":
        out.append(
            f"{where}model.type = 'diagonal' and problem.type = 'regression' go together "
            f"(a diagonal network fits a vector), got model.type = {m['type']!r} and "
            f"problem.type = {p['type']!r}"
        )
    d, one = p["shape"]
    if one != 1:
        out.append(
            f"{where}problem.type = 'regression' needs problem.shape = [d, 1], got {p['shape']}"
        )
    if p["rank"] > d:
        out.append(f"{where}problem.rank={p['rank']} (the sparsity k) exceeds d={d}")
    if m["type"] == "diagonal" and i["name"] not in _DIAGONAL_INITS:
        out.append(
            f"{where}init.name = {i['name']!r} is not an init of model.type = 'diagonal' "
            f"(one of {', '.join(_DIAGONAL_INITS)})"
        )
    if i["name"] == "zhao" and m["form"] != "product":
        out.append(f"{where}init.name = 'zhao' needs model.form = 'product'")
    if cfg["dynamics"]["method"] == "glrl":
        out.append(f"{where}dynamics.method = 'glrl' grows matrices; it has no regression form")
    if out:
        raise ConfigError(errors=out)


def _check_dynamics(cfg: dict, where: str) -> list[str]:
    d, out = cfg["dynamics"], []
    if d["method"] == "flow" and d.get("t_min") is not None and not d["t_min"] < d["t_max"]:
        out.append(
            f"{where}dynamics.t_min must be < dynamics.t_max={d['t_max']:g}, got {d['t_min']:g}"
        )
    if d.get("save_at") is not None and d["method"] in ("flow", "gd", "optax"):
        end = d["t_max"] if d["method"] == "flow" else d["steps"]
        bad = [x for x in d["save_at"] if not 0 <= x <= end]
        if d["method"] != "flow":
            bad += [x for x in d["save_at"] if x != round(x)]
        if bad:
            what = (
                f"times in [0, t_max={end:g}]"
                if d["method"] == "flow"
                else (f"integer steps in [0, steps={end}]")
            )
            out.append(f"{where}dynamics.save_at must hold {what}, got {bad[0]:g}")
    if d["method"] == "glrl" and d["psd"]:
        mm, nn = cfg["problem"]["shape"]
        if mm != nn:
            out.append(
                f"{where}dynamics.psd = true (PSD GLRL, W = U U^T) needs a square "
                f"problem.shape, got {cfg['problem']['shape']}; set dynamics.psd = false"
            )
    if d["method"] != "optax":
        return out
    hyper = {k: d[k] for k in OPTIMIZERS[d["optimizer"]].defaults if d.get(k) is not None}
    try:
        check_hyperparams(d["optimizer"], d["lr"], hyper)
    except ValueError as e:
        out.append(f"{where}dynamics: {e}")
    for k in sorted(set(HYPER) - set(OPTIMIZERS[d["optimizer"]].defaults)):
        if d.get(k) is not None:
            out.append(
                f"{where}dynamics.{k} is not a hyper-parameter of "
                f"dynamics.optimizer = {d['optimizer']!r} (it has: lr, "
                f"{', '.join(OPTIMIZERS[d['optimizer']].defaults) or 'no other'})"
            )
    return out


def _check_run(cfg: dict, where: str) -> None:
    """The checks that need a whole run config; raises every problem found together."""
    errs = _Errors()
    p, m = cfg["problem"], cfg["model"]
    with errs.check():
        if p["type"] == "regression" or m["type"] == "diagonal":
            _check_diagonal(cfg, where)
        elif p["type"] == "ratings":  # no generated truth: rank, psd and spectrum do not apply
            if m["type"] == "symmetric":
                raise ConfigError(f"{where}model.type = 'symmetric' cannot fit a ratings matrix")
        else:
            _check_truth(p, m, where)
            if cfg["init"]["name"] in ("uniform", "zhao"):
                raise ConfigError(
                    f"{where}init.name = {cfg['init']['name']!r} is an init of model.type = "
                    f"'diagonal' only"
                )
    errs.items.extend(_check_dynamics(cfg, where))
    if cfg["init"]["name"] == "perturbed_identity" and cfg["init"].get("beta") is None:
        errs.items.append(f"{where}init.beta is required by init.name = 'perturbed_identity'")
    errs.raise_any()


def _ratings_file(path: str, where: str) -> tuple[tuple[int, int], str]:
    """The ``(users, items)`` shape (largest ids) and SHA-256 of a ratings file."""
    try:
        st = Path(path).stat()
        return _ratings_file_cached(str(path), st.st_mtime_ns, st.st_size)
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"{where}problem.path: cannot read ratings from {short(path)}: {e}"
        ) from None


@functools.lru_cache(maxsize=16)
def _ratings_file_cached(path: str, mtime_ns: int, size: int) -> tuple[tuple[int, int], str]:
    data = Path(path).read_bytes()
    prob, _ = load_ratings(path, test_fraction=0.0)
    return (int(prob.shape[0]), int(prob.shape[1])), hashlib.sha256(data).hexdigest()


def _axes(raw: dict, method: str) -> list[Axis]:
    """The sweep's axes: grid axes in order, then zipped groups."""
    sw = raw.get("sweep", {})
    groups = [{k: v} for k, v in sw.get("grid", {}).items()] + zip_list(sw)
    where = ["sweep.grid"] * len(sw.get("grid", {})) + ["sweep.zip"] * len(zip_list(sw))
    axes: list[Axis] = []
    for group, w in zip(groups, where, strict=True):
        keys, values = [], []
        for k, vals in group.items():
            full = resolve_key(k, f"{w}.{k}")
            sec, kk = full.split(".")
            t, _, chk = spec(sec, kk, method)
            keys.append(full)
            values.append(tuple(check_value(full, t, chk, v) for v in vals))
        axes.append(Axis(_axis_name(next(iter(group))), tuple(keys), tuple(values)))
    names = [a.name for a in axes]
    if len(set(names)) != len(names):
        raise ConfigError(
            f"sweep: two axes share the name {[n for n in names if names.count(n) > 1][0]!r}"
        )
    return axes


def _with_ratings(cfg: dict, raw: dict, where: str) -> None:
    """A ratings run: its shape from the file where the config gives none, and the file's
    SHA-256 (the data, not its path, identifies the run)."""
    shape, digest = _ratings_file(cfg["problem"]["path"], where)
    if "shape" not in raw.get("problem", {}):
        cfg["problem"]["shape"] = list(shape)
    elif any(g < f for g, f in zip(cfg["problem"]["shape"], shape, strict=True)):
        raise ConfigError(
            f"{where}problem.shape={cfg['problem']['shape']} is smaller than the ids "
            f"of {short(cfg['problem']['path'])} need ({list(shape)})"
        )
    cfg["problem"]["sha256"] = digest


def expand(raw: dict, code_version: str | None = None, *, defaults: dict | None = None) -> Sweep:
    """Expand a validated sweep config into its runs (grid axes in order, then zipped groups;
    the last axis varies fastest). Each run's key is the hash of its config and the code
    version (:func:`rankbias.store.run_key`).

    ``defaults`` (dotted keys, e.g. :data:`LEGACY_DEFAULTS`) replace the schema's defaults of
    the keys the config does not set. Every ``record.custom`` function is imported here, before
    any run (a typo must not cost the results of a whole sweep). Raises :class:`ConfigError`
    listing every problem (of at most 20 runs).
    """
    validate(raw)
    if raw.get("kind", "sweep") != "sweep":
        raise ConfigError(f"{raw.get('name')!r} is a {raw.get('kind')} config, not a sweep")
    errs = _Errors()
    for name in raw.get("record", {}).get("custom", []):
        with errs.check():
            check_custom(name)
    base = _defaults(raw, defaults)
    axes = _axes(raw, base["dynamics"]["method"])
    sw = raw.get("sweep", {})
    sweep = Sweep(
        name=raw["name"],
        description=raw.get("description", ""),
        base=base,
        axes=axes,
        # [sweep] batch_size: the deprecated spelling (validate() warned)
        chunk_size=int(sw.get("chunk_size", sw.get("batch_size", DEFAULT_BATCH))),
        raw=raw,
    )
    for idx in itertools.product(*(range(len(a)) for a in axes)):
        cfg = copy.deepcopy(base)
        for a, i in zip(axes, idx, strict=True):
            for key, vals in zip(a.keys, a.values, strict=True):
                sec, kk = key.split(".")
                cfg[sec][kk] = vals[i]
        where = (
            ""
            if not axes
            else "run "
            + ", ".join(f"{a.name}={a.values[0][i]}" for a, i in zip(axes, idx, strict=True))
            + ": "
        )
        if cfg["problem"]["type"] == "ratings":
            _with_ratings(cfg, raw, where)
        with errs.check():
            _check_run(cfg, where)
        if errs.items:
            continue  # collect the errors of every run, keys are of no use
        cfg = _normalise_run(cfg)
        sweep.runs.append(RunSpec(cfg, tuple(idx), run_key(cfg, code_version)))
    errs.raise_any()
    return sweep
