"""``python -m jgd.experiment``: the same command line as the ``jgd`` script."""

import sys

from jgd.experiment.cli import main

sys.exit(main())
