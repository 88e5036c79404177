"""Model registry and the model families (ERI, RAVDESS, EXPR, VA, body)."""
from .registry import count_parameters, create_model, get_entry, list_models, register_model

__all__ = ["count_parameters", "create_model", "get_entry", "list_models", "register_model"]
