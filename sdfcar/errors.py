"""Error types shared by the engine and its command line."""


class InputError(ValueError):
    """Bad user input (file, field or option).

    The message is a single line that names the offending file or field and says what was
    expected; the command line prints it as it is and exits with status 2.
    """


def fail(where: str, message: str) -> InputError:
    """Build an :class:`InputError` of the form ``"<where>: <message>"``."""
    return InputError(f"{where}: {message}")
