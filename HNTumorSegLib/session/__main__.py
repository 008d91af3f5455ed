"""``python -m HNTumorSegLib.session``: the warm session (:mod:`.server`)."""

import sys

from .server import main

sys.exit(main())
