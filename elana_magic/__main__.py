"""``python -m elana_magic``: the same as the ``elana-magic`` command."""

import sys

from .cli import main

sys.exit(main())
