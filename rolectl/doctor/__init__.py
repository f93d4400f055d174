"""``rolectl doctor``: health checks and safe repairs (see :mod:`.run`)."""

from .findings import SEVERITIES as SEVERITIES
from .run import *  # noqa: F401,F403
from .run import FIELDS as FIELDS
from .run import __all__ as __all__
