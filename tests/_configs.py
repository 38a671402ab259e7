"""The tiny sweeps shared by the experiment, store, CLI and report tests."""


def tiny_sweep(
    name: str,
    grid: str,
    *,
    steps: int,
    n_save: int,
    depth: int | None = None,
    chunk_size: int | None = None,
    description: str | None = None,
) -> str:
    """TOML of a rank-1 6x6 completion sweep with GD (lr 0.2); ``grid`` is the inline table.

    Tests edit the text with ``str.replace`` on its lines (e.g. ``"lr = 0.2"``,
    ``"chunk_size = 2"``), so each line is emitted exactly as written here.
    """
    lines = [f'name = "{name}"']
    if description is not None:
        lines.append(f'description = "{description}"')
    lines += [
        'kind = "sweep"',
        "[problem]",
        'type = "completion"',
        "shape = [6, 6]",
        "rank = 1",
        "fraction = 0.7",
    ]
    if depth is not None:
        lines += ["[model]", f"depth = {depth}"]
    lines += [
        "[dynamics]",
        'method = "gd"',
        "lr = 0.2",
        f"steps = {steps}",
        f"n_save = {n_save}",
        "[sweep]",
        f"grid = {grid}",
    ]
    if chunk_size is not None:
        lines.append(f"chunk_size = {chunk_size}")
    return "\n" + "\n".join(lines) + "\n"


def tiny_flow_sweep(name: str, zip_table: str) -> str:
    """TOML of a rank-1 4x4 completion swept with gradient flow (scale 0.1, 8 records);
    ``zip_table`` is the ``[sweep] zip`` inline table (e.g. of ``dynamics.t_max`` and
    ``dynamics.max_steps``, to make runs end in different ways)."""
    return f"""
name = "{name}"
kind = "sweep"
[problem]
type = "completion"
shape = [4, 4]
rank = 1
fraction = 0.8
[init]
scale = 0.1
[dynamics]
method = "flow"
n_save = 8
[sweep]
zip = {zip_table}
"""
