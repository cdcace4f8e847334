# SPDX-License-Identifier: MIT
"""
vmcorefs
--------

A FUSE filesystem that presents a crashed s390x (IBM Z) machine's memory as
files synthesized on demand: ``/vmcore`` (an ELF core exactly like the
kernel's /proc/vmcore), ``/meminfo`` (what the crashed kernel left for a dump
tool) and ``/zcore`` (the s390 dump-format view).

Data flows one way: stores -> machine -> dump -> views -> fs.
"""

__version__ = "0.1.0"
