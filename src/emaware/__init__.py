"""Emergent misalignment and self-awareness workflow: the importable logic behind the Snakemake rules."""

__version__ = "0.1.0"


class UserError(Exception):
    """Bad input from the user (config, data file, environment): shown as one line, no traceback."""
