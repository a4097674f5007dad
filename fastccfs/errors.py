"""The one exception type that reaches users as a single line (see cli.main)."""


class UserError(Exception):
    """Bad input or a missing prerequisite: the message says what is wrong and what to do."""
