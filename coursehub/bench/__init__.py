"""The side-by-side benchmark: stock JupyterHub and coursehub, same machine, same scenarios.

`python -m coursehub.bench` (or `coursehub bench`); the command lives in commands/bench.py.
"""
