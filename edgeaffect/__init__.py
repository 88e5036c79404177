"""edgeaffect: emotion-recognition models from training to compiled, quantized edge inference."""
from __future__ import annotations

__version__ = "0.1.0"
