# SPDX-License-Identifier: MIT
"""
A pytest plugin (``-p hypothesis_cap``) for slow interpreters: with
VMCOREFS_MAX_EXAMPLES=N every Hypothesis test runs at most N examples, also
where its ``@settings`` asks for more (a decorator's settings win over a
profile), without health checks (they judge the strategies, which the
normal run on this host does). tests/test_t8_s390x.py loads it for the big-endian run under
qemu-user, where an example costs about ten times what it costs here.
"""

from __future__ import annotations

import os


def pytest_collection_modifyitems(items) -> None:
    cap = int(os.environ.get("VMCOREFS_MAX_EXAMPLES", "0") or 0)
    if cap <= 0:
        return
    from hypothesis import HealthCheck, settings
    for item in items:
        fn = getattr(item, "obj", None)
        current = getattr(fn, "_hypothesis_internal_use_settings", None)
        if current is not None and current.max_examples > cap:
            fn._hypothesis_internal_use_settings = settings(current, max_examples=cap,
                                                                 suppress_health_check=list(HealthCheck))
