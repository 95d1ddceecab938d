"""Repository-wide pytest setup; the lab fixtures come from the `podlab` pytest plugin."""

import os

from hypothesis import settings

# CI (and `make test`) runs a fixed, reproducible profile; PODLAB_HYPOTHESIS=long digs deeper.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("long", max_examples=5000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("PODLAB_HYPOTHESIS", "ci"))

# pytester drives the podlab pytest plugin itself in tests/unit/test_pytest_plugin.py.
pytest_plugins = ["pytester"]
