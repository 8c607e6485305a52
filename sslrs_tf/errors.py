"""Errors that mean "the user gave us something wrong", as opposed to bugs.

Entry points catch :class:`UserError`, print its one-line message and exit
with status 2 instead of showing a traceback.
"""


class UserError(Exception):
    """A mistake in a config, a path or input data, explained in one line."""


class DataError(UserError):
    """A data file that cannot be used as it is (unreadable, wrong bands, wrong dtype).

    Args:
        path: the offending file.
        problem: what is wrong and what was expected, e.g.
            ``"has 3 bands, expected 2 (VV, VH)"``.
    """

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
