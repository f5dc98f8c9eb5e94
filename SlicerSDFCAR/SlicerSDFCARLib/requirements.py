"""Which Python packages the module still needs, and what to hand to pip for them.

``Resources/requirements.txt`` names the ``sdfcar`` engine (its own dependencies come with
it). Until ``sdfcar`` is on a package index it is installed from a local source: the folder
or wheel named by the ``SDFCAR_SOURCE`` environment variable, or the repository that holds
this module when it is loaded from a checkout.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable, Mapping
from pathlib import Path

ENGINE = "sdfcar"
SOURCE_VARIABLE = "SDFCAR_SOURCE"


def read_requirements(path: str | Path) -> list[str]:
    """The requirement lines of a requirements file (comments, blanks and options dropped)."""
    lines = []
    for raw in Path(path).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


def missing_requirements(requirements: Iterable[str]) -> list[str]:
    """The requirements not satisfied by the installed distributions (markers honoured)."""
    # ``packaging`` is imported here, not at load time, so the module always loads.
    from packaging.requirements import InvalidRequirement, Requirement

    missing = []
    for text in requirements:
        try:
            requirement = Requirement(text)
        except InvalidRequirement as error:
            raise ValueError(f"requirements: {text!r} is not a valid requirement "
                             f"({error})") from None
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(text)
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            missing.append(text)
    return missing


def local_source(module_dir: str | Path, environ: Mapping[str, str]) -> Path | None:
    """Where to install ``sdfcar`` from: ``$SDFCAR_SOURCE`` when it exists, else the checkout
    around ``module_dir`` (a ``pyproject.toml`` naming ``sdfcar``), else None (package index)."""
    configured = environ.get(SOURCE_VARIABLE, "").strip()
    if configured:
        path = Path(configured).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{SOURCE_VARIABLE}={configured}: no such file or folder")
        return path.resolve()
    checkout = Path(module_dir).resolve().parent
    pyproject = checkout / "pyproject.toml"
    if pyproject.is_file() and f'name = "{ENGINE}"' in pyproject.read_text():
        return checkout
    return None


def install_arguments(requirements: Iterable[str], source: Path | None) -> list[str]:
    """pip arguments for ``requirements``: ``sdfcar`` becomes ``sdfcar @ file:///...`` when
    a local ``source`` is given; the others are kept as they are."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    arguments = []
    for text in requirements:
        if source is not None and canonicalize_name(Requirement(text).name) == ENGINE:
            arguments.append(f"{ENGINE} @ {source.as_uri()}")
        else:
            arguments.append(text)
    return arguments
