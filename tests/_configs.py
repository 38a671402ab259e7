"""The tiny 6x6 GD sweep shared by the experiment, store, CLI and report tests."""


def tiny_sweep(
    name: str,
    grid: str,
    *,
    steps: int,
    n_save: int,
    depth: int | None = None,
    batch_size: int | None = None,
    description: str | None = None,
) -> str:
    """TOML of a rank-1 6x6 completion sweep with GD (lr 0.2); ``grid`` is the inline table.

    Tests edit the text with ``str.replace`` on its lines (e.g. ``"lr = 0.2"``,
    ``"batch_size = 2"``), so each line is emitted exactly as written here.
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
    if batch_size is not None:
        lines.append(f"batch_size = {batch_size}")
    return "\n" + "\n".join(lines) + "\n"
