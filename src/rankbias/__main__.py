"""``python -m rankbias``: the ``rankbias`` command line (:mod:`rankbias.cli`)."""

from .cli import run

if __name__ == "__main__":
    run()
