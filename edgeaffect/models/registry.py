"""Model registry in the timm style: small factories under ``@register_model``.

A factory takes keyword overrides and returns an ``nn.Module`` whose ``spec``
attribute is its :class:`~edgeaffect.spec.ModelSpec`; ``forward`` takes the
inputs positionally in ``spec.inputs`` order and returns the outputs (a tensor,
or a tuple in ``spec.outputs`` order).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import EdgeAffectError

_REGISTRY: dict[str, "ModelEntry"] = {}


@dataclass(frozen=True)
class ModelEntry:
    name: str
    task: str
    factory: Callable
    description: str


def register_model(name: str | None = None, *, task: str, description: str = ""):
    """Register a factory function under ``name`` (default: the function's name)."""

    def deco(fn: Callable) -> Callable:
        key = name or fn.__name__
        if key in _REGISTRY and _REGISTRY[key].factory is not fn:
            raise ValueError(f"model {key!r} registered twice")
        doc = description or next(iter((fn.__doc__ or "").strip().splitlines()), "")
        _REGISTRY[key] = ModelEntry(key, task, fn, doc)
        return fn

    return deco


def list_models(task: str | None = None) -> list[str]:
    _import_families()
    return sorted(k for k, e in _REGISTRY.items() if task is None or e.task == task)


def get_entry(name: str) -> ModelEntry:
    _import_families()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        raise EdgeAffectError(f"unknown model {name!r}; registered models: {known}")
    return _REGISTRY[name]


def create_model(name: str, **overrides):
    """Build a registered model; ``overrides`` go to its factory (e.g. ``frames=16``)."""
    model = get_entry(name).factory(**overrides)
    if not hasattr(model, "spec"):
        raise TypeError(f"factory for {name!r} returned a model without a .spec")
    model.build_args = (name, dict(overrides))   # what a checkpoint stores to rebuild it (runs.save_checkpoint)
    return model


def count_parameters(model, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _import_families() -> None:
    # Importing the family modules runs their @register_model decorators.
    from . import families  # noqa: F401
