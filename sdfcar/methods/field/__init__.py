"""Neural implicit field: multi-resolution hash-grid encoding and an MLP head."""

from sdfcar.methods.field.encoding import HashGridEncoding
from sdfcar.methods.field.network import ImplicitField

__all__ = ["HashGridEncoding", "ImplicitField"]
