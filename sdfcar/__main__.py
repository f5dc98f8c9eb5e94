"""``python -m sdfcar``: the command line."""

import sys

from sdfcar.apps.cli import main

sys.exit(main())
