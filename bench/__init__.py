"""The benchmark harness: `python -m bench` (or `make bench`). See bench/harness.py."""
