"""UserError, for mistakes a user can fix, and ``printable``, for outside text in a message."""


class UserError(ValueError):
    """A problem with the user's input, files or settings.

    Its message is the whole story: it names the file, option or layer, the
    problem (with the numbers), and what to do. ``main.py`` prints it as one
    line and exits non-zero, without a traceback.
    """


def printable(text, limit=None):
    """``text`` from outside (a file name, a request, a library's message) made one safe line.

    Every character that is not printable (line breaks, terminal escapes, C1 controls,
    bidirectional overrides) becomes ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``, so the
    text can neither break a one-line message nor write to the terminal.

    Args:
        text: any str.
        limit: None, or the most characters kept (of the escaped text); a cut ends "...".
    Returns:
        str of printable characters only.
    """
    safe = "".join(char if char.isprintable() else _escaped(char) for char in text)
    return safe if limit is None or len(safe) <= limit else safe[: limit - 3] + "..."


def _escaped(char):
    """The Python-style escape of one character: ``\\x1b``, ``\\u202e``, ``\\U0001f600``."""
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
