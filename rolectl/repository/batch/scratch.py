"""The temporary tables a batch stages its rows in, dropped when it ends, however it ends.

Internal: not part of the public API.
"""

from __future__ import annotations

from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Iterator

from ...errors import RolectlError

if TYPE_CHECKING:  # pragma: no cover
    from ...backends.batchqueries import Scratch
    from ...backends.base import AnyStore


@contextmanager
def scratch_tables(store: "AnyStore", *tables: "Scratch") -> Iterator[None]:
    """Drop ``tables`` (those that exist) on the way out. When the batch failed, a failure to
    drop them (a connection that is gone) does not hide why: the tables are the connection's
    own and go with it."""
    with store.pinned():  # the tables live on this connection: it is never swapped under them
        try:
            yield
        except BaseException:
            with suppress(RolectlError), store.session() as conn:
                store.queries.unstage(conn, *tables)
            raise
        with store.session() as conn:
            store.queries.unstage(conn, *tables)
