"""python -m coursehub: the coursehub command."""

from .cli import main

main()
