"""The project's error type: anything a user can fix is raised as a GankitError with a one-line message."""

# Longest echo of a user's value in a message: a 10 MB TOML value must not become a 10 MB error line.
ECHO_LIMIT = 80


class GankitError(Exception):
    """A problem the user can fix (bad flag, missing data, broken plugin...). The CLI prints it as one line."""


class GankitWarning(UserWarning):
    """Something the user should know that does not stop the run (e.g. skipped files). The CLI shows one line."""


def shortened(text: object, limit: int = ECHO_LIMIT) -> str:
    """``text`` (e.g. a file name) cut to about ``limit`` characters, saying how long it was.

    Every message that echoes user input (config values, component specs, names, file names) goes through
    this or :func:`quoted`, so no input can make an error line much longer than the message itself.
    """
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def quoted(value: object, limit: int = ECHO_LIMIT) -> str:
    """A user's value in quotes (its repr), cut like :func:`shortened`."""
    return shortened(repr(value), limit)
