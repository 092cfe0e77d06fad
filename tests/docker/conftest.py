"""The compose topology test (`make test-docker`, scripts/test-docker.sh) runs against a stack that the
script has built and brought up; it is not part of `make test`. Without CONVHUB_STACK_URL (set by the
script) these tests are not collected at all, so a plain `pytest` neither runs nor skips them."""

from __future__ import annotations

import os

collect_ignore_glob = [] if os.environ.get("CONVHUB_STACK_URL") else ["test_*.py"]
