"""Importing this module registers every task."""
from . import eri  # noqa: F401  (registers the "eri" task)
from . import ravdess  # noqa: F401  (registers the "ravdess" task)
