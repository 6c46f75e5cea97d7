"""The configurations of the training recipes: frozen dataclasses built from a notebook's parameters."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, TypeVar

C = TypeVar("C", bound="Config")


@dataclass(frozen=True)
class Config:
    """Base of the recipes' configurations: frozen dataclasses of a notebook's training parameters."""

    @classmethod
    def from_parameters(cls: type[C], params: Mapping[str, Any], **overrides: Any) -> C:
        """The configuration from a notebook's parameters (extra names are ignored).

        Args:
            params: {name: value}, e.g. a notebook's ``PARAMETERS``.   overrides: values that win.
        Raises:
            ValueError: a field of the configuration is missing from ``params`` (named in the message).
        """
        values = {**params, **overrides}
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in values]
        if missing:
            raise ValueError(f"{cls.__name__} needs the parameter(s) {', '.join(missing)}")
        return cls(**{n: values[n] for n in names})


def select(recipes: Mapping[str, Any], names: Sequence[str] | None) -> dict[str, Any]:
    if names is None:
        return dict(recipes)
    unknown = [n for n in names if n not in recipes]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; valid: {', '.join(recipes)}")
    return {n: recipes[n] for n in names}



__all__ = ["Config", "select"]
