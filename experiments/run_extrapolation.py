"""The extrapolation benchmark: the quick profile and its report by default.

    python experiments/run_extrapolation.py                      # = make bench
    python experiments/run_extrapolation.py run --profile paper  # any `python -m gnpool.bench`
                                                                 # command line
Results: experiments/results/<profile>/ (runs.sqlite, report.md, PNG plots).
"""

from __future__ import annotations

import sys

from gnpool.bench.__main__ import main

if __name__ == "__main__":
    if sys.argv[1:] in (["-h"], ["--help"]):
        print(__doc__.strip() + "\n\nThe options of `python -m gnpool.bench`:\n")
    sys.exit(main(sys.argv[1:] or ["run", "--profile", "quick", "--report"]))
