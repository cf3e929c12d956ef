"""nhiaudit: audit and forensics for non-human identities and AI agents.

The library is the product; ``nhiaudit.cli`` is a thin Typer client of it. Nothing in the library
prints, exits, or imports typer or rich.
"""

__version__ = "0.1.0"  # the only place the version is written: pyproject.toml reads it from here
