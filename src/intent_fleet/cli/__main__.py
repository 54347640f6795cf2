"""``python -m intent_fleet.cli``: the same as the ``intent-fleet`` command."""

import sys

from .main import main

sys.exit(main())
