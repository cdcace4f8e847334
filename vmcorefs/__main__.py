# SPDX-License-Identifier: MIT
"""``python -m vmcorefs``: the vmcorefs command."""

from .cli import run

run()
