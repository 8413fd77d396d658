from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from pathlib import Path
from typing import Annotated, Any

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


# --- every component module is imported, and every component in it registered -------------


def _component_classes() -> list[tuple[str, type, Registry[Any]]]:
    """(module, class, its registry) of each component class defined outside the base modules."""
    import runners.models
    import runners.weighting
    from runners.models import ARCHITECTURES, BACKBONES, Encoder, MultiTaskModel
    from runners.weighting import WEIGHTINGS, Weighting

    kinds: list[tuple[type, Registry[Any]]] = [
        (Weighting, WEIGHTINGS),
        (MultiTaskModel, ARCHITECTURES),
        (Encoder, BACKBONES),
    ]
    found = []
    for package in (runners.weighting, runners.models):
        for info in pkgutil.iter_modules(package.__path__):
            if info.name == "base":  # the interfaces themselves
                continue
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if cls.__module__ != module.__name__:
                    continue
                for base, registry in kinds:
                    if issubclass(cls, base):
                        found.append((module.__name__, cls, registry))
    return found


def test_import_submodules_imports_every_module_of_a_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the packages of components call: a new module needs no line anywhere else.
    package = tmp_path / "probe_components"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from runners.registry import import_submodules\nimport_submodules(__name__, __path__)\n"
    )
    for name in ("alpha", "beta"):
        (package / f"{name}.py").write_text(f"import sys\nsys.probe_seen.append({name!r})\n")
    monkeypatch.setattr(sys, "probe_seen", [], raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("probe_components")
    assert sys.probe_seen == ["alpha", "beta"]  # type: ignore[attr-defined]


def test_every_component_class_is_registered() -> None:
    """A class that defines a method, an architecture or a backbone is in its registry.

    Intermediate bases are allowed: a class that is not registered must have a
    registered subclass (e.g. the dilated ResNet of the two depths; `DoubleSampling`,
    the base of SDMGrad and MoDo in their own modules).
    """
    classes = _component_classes()
    assert len(classes) >= 20
    unregistered = []
    for module, cls, registry in classes:
        registered = {registry.get(name) for name in registry}
        if cls in registered:
            continue
        subclasses = [c for _, c, _ in classes if c is not cls and issubclass(c, cls)]
        if not any(c in registered for c in subclasses):
            unregistered.append(f"{module}.{cls.__name__}")
    assert unregistered == []
