"""The ``rolectl`` command with every command module registered: help, completion, the
documentation and the tests see the whole tree from here.

Each command module attaches its commands to :data:`app` (:mod:`rolectl.cli.root`); this file
only imports them all. A run of one command imports only its own module
(:data:`rolectl.cli.root.COMMANDS`) and comes here for a name it does not know. Add-ons
outside the CLI package (the simulator) are named in :data:`ADDONS` and looked up by name,
so the core imports none of them and runs without them.

Internal: not part of the public API.
"""

from __future__ import annotations

import importlib

from .root import app, main

__all__ = ["ADDONS", "app", "main"]


def _register() -> None:
    # Importing a command module attaches its commands; keep heavy imports inside commands.
    # The order here is the order of `rolectl --help`.
    from . import roles  # noqa: F401
    from . import grants  # noqa: F401
    from . import grantlist  # noqa: F401
    from . import mailbox  # noqa: F401
    from . import events  # noqa: F401
    from . import diagnostics  # noqa: F401
    from . import cachecmd  # noqa: F401
    from . import whois  # noqa: F401
    from . import batch  # noqa: F401
    from . import doctor  # noqa: F401
    from . import backup  # noqa: F401
    from . import copy  # noqa: F401
    from . import access  # noqa: F401


#: Modules whose ``register(app)`` adds commands to ``rolectl`` (after the core's, in this
#: order). A module that is not installed is left out. Not an entry point group: reading
#: those imports ``importlib.metadata``, tens of milliseconds on every start-up.
ADDONS: tuple[str, ...] = ("rolectl.simulate.cli",)


def _register_addons() -> None:
    for name in ADDONS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
                continue  # the add-on itself is absent; a dependency of it missing is an error
            raise
        module.register(app)


_register()
_register_addons()
