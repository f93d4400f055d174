"""psycopg is imported only when a PostgreSQL database is used: the SQLite CLI and the
backend selector never pay for it (``rolectl role`` start-up is a benchmarked target)."""

from __future__ import annotations

import subprocess
import sys


def test_the_cli_and_the_backend_selector_do_not_import_psycopg() -> None:
    code = (
        "import sys, rolectl, rolectl.cli.app, rolectl.backends, rolectl.backends.postgres; "
        "assert rolectl.backends.is_postgres('postgresql://h/db'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'psycopg'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_without_psycopg_a_postgresql_database_says_which_extra_to_install() -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from rolectl.backends.postgres.connection import driver\n"
        "from rolectl.errors import DatabaseError\n"
        "try:\n    driver()\nexcept DatabaseError as exc:\n    print(exc, exc.exit_code)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == (
        "PostgreSQL support is not installed: install the PostgreSQL extra: pip install 'rolectl[postgres]' 5"
    )
