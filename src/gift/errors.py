"""The one exception users see: a one-line message that names the input and the fix."""


class GiftError(Exception):
    """A problem with the user's input or environment; the CLI prints it without a traceback."""
