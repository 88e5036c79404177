"""The model families; importing this module registers every model."""
from . import eri  # noqa: F401
from . import zoo  # noqa: F401
from . import va  # noqa: F401
from . import expr  # noqa: F401
from . import ravdess  # noqa: F401
from . import body  # noqa: F401
