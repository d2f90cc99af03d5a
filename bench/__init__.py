"""The lg-deploy benchmark suite (issue 5): `scripts/bench`, or `python -m bench --help`."""
