"""Typed registries of components, and the parameter models derived from them.

A component (an architecture, a weighting method, an optimiser, ...) registers
itself at its definition site.  Its spec parameters are the keyword-only
arguments of its constructor, annotated with their type and bounds::

    @WEIGHTINGS.register("dwa")
    class DWA(LossWeighting):
        def __init__(
            self, num_tasks: int, *, temperature: Annotated[float, Field(gt=0, le=100)] = 2.0
        ): ...

Positional arguments are run-time context (number of tasks, the backbone)
filled in by the training loop; keyword-only arguments are what a spec may
set.  The spec schema is generated from these signatures, so the validator
and the code cannot drift apart.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

import pydantic

T = TypeVar("T")


def import_submodules(package: str, path: Iterable[str]) -> None:
    """Import every module of `package` (its `__path__`), so that each registers its components.

    A component registers where it is defined; a package that listed its
    modules by hand would silently leave out one whose import was forgotten.
    Called from the package's `__init__`; modules are imported in name order.
    """
    for module in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        importlib.import_module(f"{package}.{module.name}")


class UnknownComponentError(KeyError):
    """A name that is not in a registry; the message suggests the closest names."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.known = known
        super().__init__(f"unknown {kind} {name!r}{suggestion(name, known)}")

    def __str__(self) -> str:
        return str(self.args[0])


def suggestion(name: str, known: list[str]) -> str:
    """`; did you mean 'a', 'b' or 'c'?` for the closest known names, else the valid names.

    >>> suggestion("synthetic-scene", ["synthetic-scenes", "synthetic-shapes", "nyuv2"])
    "; did you mean 'synthetic-scenes' or 'synthetic-shapes'?"
    """
    close = [repr(c) for c in difflib.get_close_matches(name, known, n=3, cutoff=0.5)]
    if close:
        listed = close[0] if len(close) == 1 else ", ".join(close[:-1]) + " or " + close[-1]
        return f"; did you mean {listed}?"
    return "; valid names: " + ", ".join(repr(k) for k in sorted(known))


class StrictModel(pydantic.BaseModel):
    """Base of every spec model: unknown keys, coercions and NaN/inf are errors."""

    model_config = pydantic.ConfigDict(
        extra="forbid", strict=True, allow_inf_nan=False, frozen=True
    )


def parameters_model(component: Callable[..., Any], model_name: str) -> type[StrictModel]:
    """A pydantic model of `component`'s keyword-only constructor parameters.

    Every keyword-only parameter must be annotated and have a default, so a
    spec may omit it and get the value of the method's original paper.
    """
    target = component.__init__ if inspect.isclass(component) else component
    hints = typing.get_type_hints(target, include_extras=True)
    fields: dict[str, Any] = {}
    for param in inspect.signature(target).parameters.values():
        if param.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        if param.name not in hints or param.default is inspect.Parameter.empty:
            raise TypeError(
                f"{model_name}: keyword-only parameter {param.name!r} needs a type and a default"
            )
        fields[param.name] = (hints[param.name], param.default)
    return pydantic.create_model(model_name, __base__=StrictModel, **fields)


class Registry(Generic[T]):
    """Name -> component, one per kind of component.

    A duplicate name is an error at import time; an unknown name is an error
    that suggests the closest registered names.
    """

    def __init__(self, kind: str, *, parametrised: bool = True) -> None:
        self.kind = kind
        self.parametrised = parametrised
        self._entries: dict[str, T] = {}
        self._params: dict[str, type[StrictModel]] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(component: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            if self.parametrised:
                model_name = f"{self.kind.title().replace(' ', '')}_{name.replace('-', '_')}"
                self._params[name] = parameters_model(component, model_name)  # type: ignore[arg-type]
            self._entries[name] = component
            return component

        return decorate

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownComponentError(self.kind, name, self.names()) from None

    def parameters(self, name: str) -> type[StrictModel]:
        """The pydantic model of `name`'s spec parameters."""
        self.get(name)
        return self._params[name]

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
