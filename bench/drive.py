#!/usr/bin/env python3
"""Runs the benchmark scenarios of `atelier serve` with same-run baselines: the entry
point bench/run calls. The benchmark itself is the atelier_bench package beside it."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from atelier_bench.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
