"""User-facing errors: one clear line, non-zero exit, nothing half-written."""
from __future__ import annotations


class UserError(Exception):
    """An error the user can fix (missing file, bad size, bad config value, missing weights).

    The CLI prints ``error: <message>`` on one line to stderr and exits with status 2.
    The message must name the problem and the fix.
    """

