"""Where running cache instances announce themselves, and how rolectl finds them.

Every process embedding a :class:`~rolectl.cache.RoleCache` for a database registers in that
database's runtime directory, ``<db>.rolectl/`` next to the file (mode 0700): one
``<id>.json`` (name, pid, host, start time, ...) and one ``<id>.sock`` (mode 0600) answered by
:class:`~rolectl.cache.ipc.InstanceServer`. rolectl lists the directory and asks each socket.
What it reports is what it saw: ``live`` (answered), ``unresponsive`` (the process exists but
gave no complete answer in time, or its socket refused: stopped with SIGSTOP, busy, its listen
queue full), ``bad-reply`` (its registration or answer is malformed, or its socket is served by
an untrusted user), ``dead`` (the process is gone: its pid no longer exists, or now belongs to
another process, see :mod:`rolectl.cache.liveness`), ``remote`` (registered from another host:
not probed, never pruned). Only a dead instance's files are ever pruned.

The directory is trusted only when the caller or the database's owner owns it and nobody
else can enter it; every file operation goes through its descriptor with plain ``<id>.*``
names (see :mod:`rolectl.cache.rundir`), so a registration can never point rolectl elsewhere.
The ``.json`` file's mtime is refreshed every few seconds; the same heartbeat binds the socket
again if someone removed it.

This module is the registry's face: the bot's side is :mod:`.registration`
(:class:`Registration`, :func:`register`), rolectl's side :mod:`.instance` (one instance, and
asking it) and :mod:`.discovery` (finding, pruning, choosing, waiting). Their names are
importable from here, where bots, the backends and the CLI have always taken them.
"""

from __future__ import annotations

from .discovery import choose as choose
from .discovery import discover as discover
from .discovery import not_live_summary as not_live_summary
from .discovery import prune as prune
from .discovery import wait_applied as wait_applied
from .instance import BAD_REPLY as BAD_REPLY
from .instance import DEAD as DEAD
from .instance import LIVE as LIVE
from .instance import REMOTE as REMOTE
from .instance import RUNNING as RUNNING
from .instance import STALE as STALE
from .instance import UNRESPONSIVE as UNRESPONSIVE
from .instance import Instance as Instance
from .instance import PeerError as PeerError
from .instance import fill_from_stats as fill_from_stats
from .instance import label as label
from .registration import Registration, register
from .rundir import runtime_dir as runtime_dir

#: What a bot uses (the rest serves the CLI and the doctor, and may change).
__all__ = ["Registration", "register"]
