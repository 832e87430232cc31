"""The ``sym3d`` command line. :func:`main` is the console-script entry point."""

from sym3d.cli.main import main

__all__ = ["main"]
