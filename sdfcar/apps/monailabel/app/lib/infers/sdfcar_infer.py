"""The ``sdfcar`` infer task: two-view reconstruction of one case of the studies folder."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import HTTPException
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from sdfcar.apps.monailabel.infer import run_request
from sdfcar.apps.monailabel.studies import DEFAULT_SETTINGS, RequestError

log = logging.getLogger(__name__)


class SdfcarInfer(InferTask):
    """Reconstructs the coronary tree of ``<case>_view1`` / ``<case>_view2`` (or the views
    and geometry named in the request) and answers with the 3D label and a JSON summary.

    There are no weights: every request optimises a new field from its two views."""

    def __init__(self, studies: str) -> None:
        super().__init__(
            type=InferType.SEGMENTATION,
            labels={"coronary artery": 1},
            dimension=3,
            description="SDF-CAR: 3D coronary arteries from two X-ray angiography views "
                        "(image = view 1; view 2 and geometry by the <case>_view2 / "
                        "<case>_geometry.json convention or in params)",
            config={"view2": "", "preset": DEFAULT_SETTINGS["preset"],
                    "device": DEFAULT_SETTINGS["device"]},
        )
        self.studies = studies

    def is_valid(self) -> bool:
        """Always usable: the task needs no model file."""
        return True

    def __call__(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Run the request; a bad one becomes an HTTP 4xx error with a one-line reason."""
        try:
            return run_request(request, self.studies)
        except RequestError as error:
            log.warning("sdfcar: request refused (%d): %s", error.status, error)
            raise HTTPException(status_code=error.status, detail=str(error)) from None
