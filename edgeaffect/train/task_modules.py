"""Importing this module registers every task."""
from . import eri  # noqa: F401  (registers the "eri" task)
from . import body  # noqa: F401  (registers the "body" task)
