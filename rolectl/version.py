"""rolectl's version, in a module of its own: every layer reports it (``rolectl --version``,
``rolectl stats``), and importing it must not import the package's public names.

Internal: not part of the public API.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
