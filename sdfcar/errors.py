"""Error types shared by the engine and its command line."""


class InputError(ValueError):
    """Bad user input (file, field or option).

    The message is a single line that names the offending file or field and says what was
    expected; the command line prints it as it is and exits with status 2.
    """


def bad_input(where: str, message: str) -> InputError:
    """Build an :class:`InputError` of the form ``"<where>: <message>"``, or ``"<message>"``
    when ``where`` is empty (the top level of a file whose name a caller puts in front)."""
    return InputError(f"{where}: {message}" if where else message)


#: Exit status of every command on bad input.
EXIT_BAD_INPUT = 2
_ERROR_MARK = ": error: "


def error_line(command: str, message: str) -> str:
    """The one line a command prints on bad input: ``sdfcar <command>: error: <message>``."""
    return f"sdfcar {command}{_ERROR_MARK}{message}"


def parse_error_line(line: str) -> str | None:
    """The message of an :func:`error_line` line, or None for any other line."""
    head, mark, message = line.strip().partition(_ERROR_MARK)
    words = head.split(" ")
    if not mark or len(words) != 2 or words[0] != "sdfcar" or not message:
        return None
    return message
