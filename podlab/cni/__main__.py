"""`python -m podlab.cni` is the `podlab-agent` command."""

import sys

from podlab.cni.cli import main

sys.exit(main())
