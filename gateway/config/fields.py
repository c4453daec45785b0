"""The field types every configuration section shares (strict models, numbers
and flags that may come from ``${VAR}``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


PositiveFloat = Annotated[float, Field(gt=0)]


class EnvInt(int):
    """An int substituted from the environment, remembering its exact text."""

    text: str


class EnvFloat(float):
    """A float substituted from the environment, remembering its exact text."""

    text: str


def _number_to_text(value: Any) -> Any:
    if isinstance(value, (EnvInt, EnvFloat)):
        return value.text
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


Text = Annotated[str, BeforeValidator(_number_to_text)]
"""A string field that also takes a number, as an all-digit ``${SECRET}`` yields."""


def _text_to_flag(value: Any) -> Any:
    return {"true": True, "false": False}.get(value, value) if isinstance(value, str) else value


Flag = Annotated[bool, BeforeValidator(_text_to_flag)]
"""A boolean that also takes the text ``true``/``false`` (from ``${VAR}``)."""
PositiveInt = Annotated[int, Field(ge=1)]
Mode = Literal["open", "closed"]
