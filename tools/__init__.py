"""Command-line tools: data conversion, checks and split drawing, the multi-seed runner, the
parameter count. Run from the repository root: `python -m tools.<name> --help`."""
