import json

import numpy as np
import pytest
import torch

from edgeaffect.errors import EdgeAffectError
from edgeaffect.models import count_parameters, create_model, list_models
from edgeaffect.spec import ModelSpec, TensorSpec


def test_spec_json_roundtrip_keeps_everything():
    spec = create_model("eri_dual_branch").spec
    again = ModelSpec.from_json(spec.to_json())
    assert again == spec
    assert json.loads(spec.to_json())["inputs"][0]["shape"][0] == "B"


def test_tensor_spec_concrete_and_match():
    t = TensorSpec("video", ("B", 4, 3, 8, 8))
    assert t.concrete(5) == (5, 4, 3, 8, 8)
    assert t.matches((2, 4, 3, 8, 8)) and not t.matches((2, 4, 3, 8, 9)) and not t.matches((2, 4, 3, 8))
    with pytest.raises(ValueError):
        TensorSpec("x", (1,), "complex64")


def test_unknown_model_is_a_clear_error():
    with pytest.raises(EdgeAffectError, match="unknown model 'nope'"):
        create_model("nope")


def _size_on_meta(name: str) -> int:
    """Parameter count without allocating weights, to sort out the reference-size models."""
    with torch.device("meta"):
        return count_parameters(create_model(name))


# Reference-size models (tens of millions of parameters, minutes on 2 CPU cores) run with -m slow.
_HEAVY = 20_000_000


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if _size_on_meta(n) > _HEAVY else n for n in list_models()],
)
def test_every_registered_model_runs_its_spec(name):
    model = create_model(name).eval()
    spec = model.spec
    feeds = spec.dummy_inputs(batch=2)
    with torch.no_grad():
        out = model(*[torch.from_numpy(feeds[n]) for n in spec.input_names])
    outs = out if isinstance(out, tuple) else (out,)
    assert len(outs) == len(spec.outputs)
    for o, t in zip(outs, spec.outputs):
        assert t.matches(tuple(o.shape)), (name, t, o.shape)
        assert np.isfinite(o.numpy()).all()
    assert count_parameters(model) > 0
