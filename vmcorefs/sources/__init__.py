# SPDX-License-Identifier: MIT
"""
Sources: inputs that are not machine descriptions.

The ``vmcorefs.sources`` package reads files other tools wrote about a
crashed system: :mod:`.s390dump` opens a dump in the s390 dump format
(zipl's dumpers, zgetdump, ``/zcore/mem``) as a
:class:`~vmcorefs.machine.Machine`; :mod:`.elfnotes` takes the CPU states
out of an ELF core's notes.
"""
