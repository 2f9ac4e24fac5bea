"""``python -m jaxrl`` runs the command line (same as ``jaxrl``)."""

import sys

from jaxrl.cli import main

sys.exit(main())
