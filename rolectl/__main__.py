"""``python -m rolectl``: the same as the ``rolectl`` command.

Internal: not part of the public API.
"""

from rolectl.cli import main

main()
