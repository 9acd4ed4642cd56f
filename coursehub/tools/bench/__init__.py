"""The side-by-side benchmark: stock JupyterHub and coursehub, same machine, same scenarios.

`coursehub bench`; the command lives in cli/bench.py.
"""
