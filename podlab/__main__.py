"""`python -m podlab` is the `podlab` command."""

import sys

from podlab.lab.cli import main

sys.exit(main())
