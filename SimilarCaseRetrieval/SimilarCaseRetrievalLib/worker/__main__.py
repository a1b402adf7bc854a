"""`python -m SimilarCaseRetrievalLib.worker`: the module's worker process (see server.py)."""

from __future__ import annotations

import os
import sys

from .server import main


def run() -> int:
    # Offline is set in this process only (never in Slicer's interpreter): nothing is downloaded at run time.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return main()


if __name__ == "__main__":
    sys.exit(run())
