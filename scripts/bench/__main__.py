"""`python -m scripts.bench`: see the package's docstring, or `--help`."""

import sys

from scripts.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
