from __future__ import annotations

from typing import Annotated

import pydantic
import pytest
from pydantic import Field

from runners.registry import Registry, UnknownComponentError


def test_parameters_come_from_keyword_only_arguments() -> None:
    registry: Registry[type] = Registry("widget")

    @registry.register("knob")
    class Knob:
        def __init__(self, context: int, *, gain: Annotated[float, Field(gt=0, le=2)] = 1.0):
            self.gain = gain

    model = registry.parameters("knob")
    assert list(model.model_fields) == ["gain"]  # the positional context is not a parameter
    assert model.model_validate({}).gain == 1.0
    with pytest.raises(pydantic.ValidationError):
        model.model_validate({"gain": 3.0})
    with pytest.raises(pydantic.ValidationError):
        model.model_validate({"gain": 1.0, "other": 1})


def test_duplicate_name_is_an_error() -> None:
    registry: Registry[type] = Registry("widget")
    registry.register("a")(type("A", (), {}))
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        registry.register("a")(type("B", (), {}))


def test_unknown_name_suggests_the_closest() -> None:
    registry: Registry[type] = Registry("weighting")
    for name in ("dwa", "mgda", "pcgrad"):
        registry.register(name)(type(name, (), {}))
    with pytest.raises(UnknownComponentError) as info:
        registry.get("dwaa")
    assert str(info.value) == "unknown weighting 'dwaa'; did you mean 'dwa' or 'mgda'?"
    with pytest.raises(UnknownComponentError, match="valid names: 'dwa', 'mgda', 'pcgrad'"):
        registry.get("zzzzzz")


def test_parameter_without_default_is_rejected_at_registration() -> None:
    registry: Registry[type] = Registry("widget")

    class Bad:
        def __init__(self, *, gain: float) -> None: ...

    with pytest.raises(TypeError, match="'gain' needs a type and a default"):
        registry.register("bad")(Bad)
