"""Copy one reproduction's PNG figures and its summary into docs/gallery/figures/.

Usage: python scripts/gallery_collect.py NAME RESULTS_DIR MODE WALL_SECONDS
PNGs above 200 KB are re-encoded at a smaller size (Pillow, a matplotlib dependency), so the
committed figures stay small. The record ``NAME.json`` holds the summary the experiment
returned, its mode (full/quick), the date (UTC), the rankbias version and the wall time.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import sys
from pathlib import Path

from PIL import Image

import rankbias

LIMIT = 200_000


def _shrink(path: Path) -> None:
    while path.stat().st_size > LIMIT:
        im = Image.open(path)
        im = (
            im.convert("P", palette=Image.ADAPTIVE, colors=128)
            if im.mode != "P"
            else im.resize((int(im.width * 0.8), int(im.height * 0.8)))
        )
        im.save(path, optimize=True)


def main(name: str, results: str, mode: str, wall: str) -> None:
    src, dst = Path(results), Path("docs/gallery/figures")
    dst.mkdir(parents=True, exist_ok=True)
    figures = []
    for png in sorted(src.glob("*.png")) + sorted((src / "figures").glob("*.png")):
        target = dst / f"{name}--{png.name}"
        shutil.copyfile(png, target)
        _shrink(target)
        figures.append(target.name)
    summary = (
        json.loads((src / "summary.json").read_text()) if (src / "summary.json").exists() else {}
    )
    date = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    record = {
        "experiment": name,
        "mode": mode,
        "date": date,
        "rankbias": rankbias.__version__,
        "wall_s": int(wall),
        "figures": figures,
        "summary": summary,
    }
    tmp = dst / f".{name}.json.tmp"
    tmp.write_text(json.dumps(record, indent=1, default=str))
    tmp.replace(dst / f"{name}.json")
    print(f"{name}: {len(figures)} figure(s), {mode}, {wall} s")


if __name__ == "__main__":
    main(*sys.argv[1:5])
