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


class TrainingStopped(Exception):
    """The run stopped itself (e.g. the loss kept being non-finite); the message says why."""


class Preempted(Exception):
    """The process received SIGTERM, saved a checkpoint where the run was and stopped; the message says
    how to resume. Entry points exit with :data:`PREEMPTED_STATUS`."""


#: the exit status of a preempted run: 42, the one TF's PreemptionCheckpointHandler exits with by default
#: (a cluster manager can restart the job on it)
PREEMPTED_STATUS = 42


def run_entry_point(action):
    """Runs `action()` for a command-line entry point and returns its exit status.

    0 when it returns; 2 after printing ``error: <message>`` for a :class:`UserError`;
    1 after printing the message of a :class:`TrainingStopped`; :data:`PREEMPTED_STATUS` after
    printing the message of a :class:`Preempted`. No traceback for any of them.
    TensorFlow's start-up logs are kept out of a command's output (``TF_CPP_MIN_LOG_LEVEL=2``
    unless set): an entry point loads TensorFlow inside `action`. Imported as a library, the
    package leaves its host program's logging alone.
    """
    import os
    import sys

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    try:
        action()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingStopped as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Preempted as err:
        print(err, file=sys.stderr)
        return PREEMPTED_STATUS
    return 0
