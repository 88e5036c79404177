"""Importing this module registers every task."""
from . import eri  # noqa: F401  (registers the "eri" task)
from . import fer2013  # noqa: F401  (registers the "fer2013" task)
from . import va  # noqa: F401  (registers the "va" task)
from . import expr  # noqa: F401  (registers the "expr" task)
from . import ravdess  # noqa: F401  (registers the "ravdess" task)
from . import body  # noqa: F401  (registers the "body" task)
