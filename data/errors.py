"""The one exception type for mistakes a user can fix."""


class UserError(ValueError):
    """A problem with the user's input, files or settings.

    Its message is the whole story: it names the file, option or layer, the
    problem (with the numbers), and what to do. ``main.py`` prints it as one
    line and exits non-zero, without a traceback.
    """
