"""Write path, counted: N role changes or grants through the repository, for an instruction counter.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python benchmarks/count_write.py --change role -n 1200

Makes what bench_write.py's repository rounds make (``add_admin`` / ``remove_admin``, or a
chat grant / revoke, alternating so that each call commits one event) on a fresh file with
``synchronous=OFF``, after ``gc.freeze()``. Run it at two ``-n`` (say 200 and 1,200): the
difference of the two counts over the difference of ``n`` is the instructions per change,
set-up and interpreter start cancelled. Wall-clock CPU on a shared machine varies by 20-30 %
between identical runs; the count repeats to a few tenths of a per cent.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_write import CHANGES, USERS  # noqa: E402

from rolectl.repository import Repository  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--change", choices=sorted(CHANGES), default="role")
    parser.add_argument("-n", type=int, default=1200, help="changes to make")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rolectl-count-write-") as tmp:
        repo = Repository.init(Path(tmp) / "bot.db")
        repo.store.conn.execute("PRAGMA synchronous = OFF")
        with repo.store.transaction() as conn:
            conn.executemany("INSERT INTO users (user_id) VALUES (?)", [(i,) for i in range(1, USERS + 1)])
        repo.roles.add("moderator", 50, actor="bench")
        gc.freeze()
        CHANGES[args.change][2](repo, args.n, 0)
        repo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
