"""The project's error type: anything a user can fix is raised as a GankitError with a one-line message."""


class GankitError(Exception):
    """A problem the user can fix (bad flag, missing data, broken plugin...). The CLI prints it as one line."""


class GankitWarning(UserWarning):
    """Something the user should know that does not stop the run (e.g. skipped files). The CLI shows one line."""
