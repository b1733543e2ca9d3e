"""``python -m jgd``: the same command line as the ``jgd`` script."""

import sys

from jgd.cli import main

sys.exit(main())
