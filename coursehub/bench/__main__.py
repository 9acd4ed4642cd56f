"""`python -m coursehub.bench`: the same command as `coursehub bench`."""

import logging

from ..commands.bench import bench

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
bench(prog_name="python -m coursehub.bench")
