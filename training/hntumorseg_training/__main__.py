"""``python -m hntumorseg_training``: see :mod:`hntumorseg_training.cli`."""

import sys

from hntumorseg_training.cli import main

sys.exit(main())
