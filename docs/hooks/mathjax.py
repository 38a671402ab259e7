"""mkdocs hook: serve MathJax 3 from the built site (no CDN), so math renders offline.

The single-file SVG build (``es5/tex-svg.js``, no web fonts needed) is copied from the
``django-static-mathjax`` wheel (a plain copy of MathJax 3.2.2, no Django import) into
``site/assets/mathjax/``. Without that package the build fails with a message saying what to
install, rather than producing pages whose math silently stays as TeX source.
"""

from __future__ import annotations

import shutil
from importlib.util import find_spec
from pathlib import Path


def _source() -> Path:
    spec = find_spec("mathjax")
    path = None if spec is None or spec.origin is None else \
        Path(spec.origin).parent / "static" / "mathjax" / "es5" / "tex-svg.js"
    if path is None or not path.is_file():
        raise RuntimeError("MathJax not found: pip install -e '.[docs]' (django-static-mathjax "
                           "provides the MathJax 3 files the docs serve)")
    return path


def on_post_build(config, **kwargs) -> None:
    dest = Path(config["site_dir"]) / "assets" / "mathjax"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_source(), dest / "tex-svg.js")
