"""Errors a user can fix, as distinct from bugs.

The command line prints a :class:`UserError` as one line (``stllr: error: ...``, exit
status 2) and lets every other exception keep its traceback, so a bug is never turned
into a vague message. Raise it for bad input: a file that is missing or malformed (name
the file, the field and the value expected), an option out of range, a checkpoint that
does not fit the model. It subclasses ``ValueError`` so library callers that catch
``ValueError`` keep working.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input a user can fix; the message is one line that says what and where."""
