# SPDX-License-Identifier: MIT
"""
A QMP client
------------

The ``vmcorefs.sources.qmp`` module talks to a running QEMU over its QMP
monitor socket (``-qmp unix:PATH,server=on,wait=off``): plain blocking
socket calls, each bounded by a timeout, so that nothing waits for a QEMU
that hangs. It is used from plain code (``info``, ``save``) and from inside
the mount's trio loop (opening the source, the checks of every read), which
is why it needs no event loop: while the source is open only non-blocking
:meth:`Qmp.poll_events` runs between commands.

A QMP socket serves one client at a time: QEMU accepts a second connection
only when the first one ends, so a busy socket connects but never greets.
That is told apart from a socket that is not QMP (it says something else,
or closes) by the greeting's timeout.

File descriptors are passed with ``getfd`` (SCM_RIGHTS), so QEMU writes
where vmcorefs opened, whatever user QEMU runs as.
"""

from __future__ import annotations

import json
import socket
import time

from ..errors import InputError

__all__ = ("COMMAND_TIMEOUT", "GREETING_TIMEOUT", "Qmp", "QmpError")

GREETING_TIMEOUT = 5.0  # seconds for QEMU's greeting: longer means another client holds the monitor
COMMAND_TIMEOUT = 60.0  # seconds for one command (a dump-guest-memory of a tiny range, a stop)
MAX_LINE = 16 << 20  # a QMP answer longer than this is not one


class QmpError(InputError):
    """QEMU answered a command with an error, or the connection failed (one line)."""


class Qmp:
    """
    A QMP connection to the QEMU at *path*, capabilities negotiated.

    :param name: how messages name the source (``qmp:PATH``)
    :raises InputError: no such socket, nobody listening, a busy socket, not QMP
    """

    def __init__(self, path: str, name: str, greeting_timeout: float = GREETING_TIMEOUT,
                 timeout: float = COMMAND_TIMEOUT) -> None:
        self.path = path
        self.name = name
        self.timeout = timeout
        self.events: list[dict] = []  # events read and not yet taken
        self.closed = False  # QEMU closed the connection
        self._buf = b""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            self._connect(greeting_timeout)
        except BaseException:
            self.sock.close()
            raise

    @classmethod
    def when_up(cls, path: str, name: str, within: float, process=None, **kw) -> Qmp:
        """
        Connect to the QMP socket of a QEMU that is starting, or whose
        monitor another client is letting go of: try again until *within*
        seconds have passed, and stop as soon as *process* (QEMU's
        :class:`subprocess.Popen`, if given) has exited. For programs that
        start QEMU themselves (tests/guest.py, contrib/fixtures/run-qemu.py);
        *kw* as for :class:`Qmp`.

        :raises InputError: the last failure, or QEMU exited
        """
        deadline = time.monotonic() + within
        while True:
            try:
                return cls(path, name, **kw)
            except InputError:
                if process is not None and process.poll() is not None:
                    raise InputError(f"{name}: QEMU exited ({process.returncode}) before its QMP socket "
                                     "was up") from None
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)

    def _connect(self, greeting_timeout: float) -> None:
        self.sock.settimeout(greeting_timeout)
        try:
            self.sock.connect(self.path)
        except FileNotFoundError:
            raise InputError(f"{self.name}: no such socket (is QEMU running with "
                             f"-qmp unix:{self.path},server=on,wait=off?)") from None
        except ConnectionRefusedError:
            raise InputError(f"{self.name}: nobody listens on the socket (QEMU is gone?)") from None
        except (TimeoutError, BlockingIOError):  # EAGAIN: the queue of waiting clients is full
            raise InputError(f"{self.name}: the monitor is busy (other clients are connected and waiting; a QMP "
                             "socket serves one client at a time: give QEMU another "
                             "-qmp unix:PATH,server=on,wait=off for vmcorefs)") from None
        except OSError as exc:
            raise InputError(f"{self.name}: cannot connect: {exc.strerror or exc}") from None
        try:
            greeting = self._message(what="greeting")
        except TimeoutError:
            raise InputError(f"{self.name}: QEMU does not greet within {greeting_timeout:.0f} s: the monitor "
                             "is busy (another client is connected; a QMP socket serves one client at a time: "
                             "give QEMU another -qmp unix:PATH,server=on,wait=off for vmcorefs) or it is not a "
                             "QMP socket") from None
        if "QMP" not in greeting:
            raise InputError(f"{self.name} is not a QMP socket (its first message has no 'QMP' greeting)")
        self.sock.settimeout(self.timeout)
        self.version = greeting["QMP"].get("version", {}).get("qemu", {})
        self.command("qmp_capabilities")

    def _message(self, what: str) -> dict:
        """Read one JSON object (blocking, with the socket's timeout)."""
        while b"\n" not in self._buf:
            data = self.sock.recv(65536)
            if not data:
                self.closed = True
                raise InputError(f"{self.name}: QEMU closed the connection (waiting for its {what})")
            self._buf += data
            if len(self._buf) > MAX_LINE:
                raise InputError(f"{self.name} is not a QMP socket (no end of line in {MAX_LINE} bytes)")
        line, _, self._buf = self._buf.partition(b"\n")
        try:
            msg = json.loads(line)
        except ValueError:
            raise InputError(f"{self.name} is not a QMP socket (it said {line[:60]!r})") from None
        if not isinstance(msg, dict):
            raise InputError(f"{self.name} is not a QMP socket (it said {line[:60]!r})")
        return msg

    def command(self, name: str, **arguments):
        """
        Run QMP command *name*; return its ``return`` value. Events that
        arrive meanwhile are kept in :attr:`events`.

        :raises QmpError: QEMU's error, a closed connection, a timeout
        """
        msg = {"execute": name}
        if arguments:
            msg["arguments"] = arguments
        try:
            self.sock.sendall(json.dumps(msg).encode() + b"\n")
            deadline = time.monotonic() + self.timeout
            while True:
                self.sock.settimeout(max(0.1, deadline - time.monotonic()))
                reply = self._message(what=f"answer to {name}")
                if "event" in reply:
                    self.events.append(reply)
                elif "return" in reply:
                    return reply["return"]
                elif "error" in reply:
                    err = reply["error"]
                    raise QmpError(f"{self.name}: QEMU refused {name}: {err.get('desc', err)}")
        except TimeoutError:
            raise QmpError(f"{self.name}: no answer to {name} within {self.timeout:.0f} s") from None
        except InputError as exc:
            if isinstance(exc, QmpError):
                raise
            raise QmpError(str(exc)) from None
        except OSError as exc:
            self.closed = True
            raise QmpError(f"{self.name}: {name}: {exc.strerror or exc}") from None

    def send_fd(self, fd: int, fdname: str) -> None:
        """Give QEMU the file descriptor *fd* under *fdname* (``getfd``)."""
        msg = json.dumps({"execute": "getfd", "arguments": {"fdname": fdname}}).encode() + b"\n"
        try:
            socket.send_fds(self.sock, [msg], [fd])
        except OSError as exc:
            raise QmpError(f"{self.name}: cannot pass a file to QEMU: {exc.strerror or exc}") from None
        deadline = time.monotonic() + self.timeout
        try:
            while True:
                self.sock.settimeout(max(0.1, deadline - time.monotonic()))
                reply = self._message(what="answer to getfd")
                if "event" in reply:
                    self.events.append(reply)
                elif "return" in reply:
                    return
                elif "error" in reply:
                    raise QmpError(f"{self.name}: QEMU refused getfd: {reply['error'].get('desc')}")
        except TimeoutError:
            raise QmpError(f"{self.name}: no answer to getfd within {self.timeout:.0f} s") from None

    def poll_events(self) -> list[dict]:
        """
        Read whatever QEMU sent meanwhile without waiting; return the events
        and forget them. Sets :attr:`closed` when QEMU closed the connection.
        """
        if not self.closed:
            self.sock.setblocking(False)  # a socket with a timeout would wait for data first
            try:
                while True:
                    try:
                        data = self.sock.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        self.closed = True
                        break
                    if not data:
                        self.closed = True
                        break
                    self._buf += data
            finally:
                self.sock.settimeout(self.timeout)
            while b"\n" in self._buf:
                line, _, self._buf = self._buf.partition(b"\n")
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if isinstance(msg, dict) and "event" in msg:
                    self.events.append(msg)
        events, self.events = self.events, []
        return events

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
