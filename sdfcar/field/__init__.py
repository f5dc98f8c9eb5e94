"""Neural implicit field: multi-resolution hash-grid encoding and an MLP head."""

from .encoding import HashGridEncoding
from .network import ImplicitField

__all__ = ["HashGridEncoding", "ImplicitField"]
