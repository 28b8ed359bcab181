"""Shared test setup."""

from __future__ import annotations

import os
import random

# Each test session talks on its own DDS domain, so concurrent runs (and other ROS
# processes on the machine) never see each other's topics. Child processes inherit it.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 200)))
os.environ.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "1")
