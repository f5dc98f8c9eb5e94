"""The reconstruction methods by name: what ``method`` and ``prior`` in a config select."""

from __future__ import annotations

from sdfcar.methods.base import Method
from sdfcar.methods.field.method import FieldMethod
from sdfcar.methods.tree.method import TreeMethod
from sdfcar.methods.tubes.method import TubeMethod
from sdfcar.methods.voxel import VoxelMethod

METHODS: dict[str, type] = {cls.name: cls for cls in (VoxelMethod, FieldMethod, TubeMethod,
                                                  TreeMethod)}


def method_named(name: str) -> Method:
    """A new instance of the method called ``name`` (a key of :data:`METHODS`)."""
    return METHODS[name]()
