"""Entry point: `python -m bench [--quick]`."""

import sys

from bench.harness import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
