"""MONAI Label app serving SDF-CAR two-view reconstruction as the infer task ``sdfcar``.

Start it with ``monailabel start_server --app <this folder> --studies <studies folder>``;
the studies folder layout is described in :mod:`sdfcar.apps.monailabel.studies`.
"""

from __future__ import annotations

from typing import Any

from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException
from monailabel.interfaces.tasks.infer_v2 import InferTask

from sdfcar import __version__
from sdfcar.apps.monailabel.app.lib.infers import SdfcarInfer
from sdfcar.apps.monailabel.studies import IMAGE_ID_KEY


class SdfcarApp(MONAILabelApp):
    """One infer task (``sdfcar``); no training, the reconstruction is per case."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        if studies.startswith(("http://", "https://")):
            raise MONAILabelException(MONAILabelError.APP_INIT_ERROR,
                                      "sdfcar needs a local studies folder, not a URL")
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="SDF-CAR",
                         description="Two-view 3D coronary artery reconstruction",
                         version=__version__, labels={"coronary artery": 1})

    def init_infers(self) -> dict[str, InferTask]:
        """The ``sdfcar`` task, reading cases from the studies folder."""
        return {"sdfcar": SdfcarInfer(self.studies)}

    def infer(self, request: dict[str, Any], datastore: Any = None) -> dict[str, Any]:
        """Keep the image id as sent: the base class swaps ``image`` for a file path (and
        passes any existing path through), so the task checks the id itself."""
        return super().infer({**request, IMAGE_ID_KEY: request.get("image")}, datastore)
