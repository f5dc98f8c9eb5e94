"""Run one MONAI Label request as the ``sdfcar`` infer task would, without a server:

    python tests/hostile_request.py STUDIES REQUEST_JSON OUT_DIR

A refused request prints ``sdfcar monailabel: error: <status>: <detail>`` (the HTTP status
and the one-line detail the server would answer with) and exits with status 2; a request
that runs writes its label into OUT_DIR and exits 0. Used by the hostile-input suite
(``tests/hostile_cases.py``).
"""

from __future__ import annotations

import json
import sys

from sdfcar.apps.monailabel.infer import run_request
from sdfcar.apps.monailabel.studies import RequestError
from sdfcar.errors import EXIT_BAD_INPUT, error_line


def main(arguments: list[str]) -> int:
    """Run the request of ``arguments`` (studies folder, request as JSON text, output
    folder)."""
    studies, request, out = arguments
    try:
        label, _ = run_request(json.loads(request), studies, out)
    except RequestError as error:
        print(error_line("monailabel", f"{error.status}: {error}"), file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"wrote {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
