# SPDX-License-Identifier: MIT
"""
Views: the files vmcorefs presents, each an extent map over a dump.

The ``vmcorefs.views`` package turns a :class:`~vmcorefs.dump.Dump` into
files: :mod:`.vmcore` (the ELF /proc/vmcore), :mod:`.zcore` (the s390 dump
format of the zcore driver) and :mod:`.meminfo` (os_info, browsable).
No view knows about FUSE.
"""
