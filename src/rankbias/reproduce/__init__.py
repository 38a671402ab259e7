"""Paper reproductions: functions ``f(out_dir: Path, quick: bool = False, **params) -> dict``.

Each writes its figures (PNG and SVG) and tables into ``out_dir`` and returns a JSON-able
summary of the numbers it measured. Named experiments (``rankbias list``) point at them.
"""
