"""Plain values of DICOM tags for the XA reader."""

from __future__ import annotations

from typing import Any

from sdfcar.errors import bad_input


def numbers(value: Any, where: str) -> list[float]:
    """A tag's value (one value or a list) as floats; ``where`` names it in the error."""
    values = value if isinstance(value, list) else [value]
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        raise bad_input(where, f"expected numbers, got {value!r}") from None
