"""Commands that live outside cli.py, each module a group of related ones."""
