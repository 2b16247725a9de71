"""The one error type that users of the backend see for bad input."""


class ImageError(ValueError):
    """Raised for input a user can fix: unreadable files, empty or NaN arrays, images of the
    wrong dimension, mismatched geometry, unknown options.

    The message says what was wrong and what to do about it, in words a clinician follows.
    """


class Cancelled(Exception):
    """Raised by a long operation (training, registration) when its ``should_stop`` callback
    asked it to stop. Nothing it would have written has been written."""
