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


def reason(err):
    """What went wrong, in a few words and one line: the system's reason for a file error (h5py puts it
    inside a long message), else the message's first line without TensorFlow's ``{{function_node ...}}``
    prefix and ``[Op:...]`` suffix."""
    import re

    text = str(err).strip()
    found = re.search(r"error message = '([^']*)'", text)
    if found:
        return found.group(1)
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = re.sub(r"^\{\{[^}]*\}\}\s*", "", text.splitlines()[0] if text else type(err).__name__)
    return re.sub(r"\s*\[Op:\w+\]$", "", text)


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
    unless set; the lines TF's C++ code writes before that setting is read, which
    :data:`HARMLESS` lists, are taken out of the process's standard error): an entry point
    loads TensorFlow inside `action`. Imported as a library, the package leaves its host
    program's logging alone, and a user who sets ``TF_CPP_MIN_LOG_LEVEL`` sees every line.
    Before `action`, malloc is set to keep freed memory (:func:`sslrs_tf.malloc.keep_freed_memory`).
    """
    import os
    import sys

    from sslrs_tf.malloc import keep_freed_memory

    keep_freed_memory()

    quiet = "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # read when TensorFlow loads, inside `action`
    # Only on the process's own standard error (a test capturing sys.stderr keeps its own).
    filtered = _HarmlessLinesFilter() if quiet and sys.stderr is sys.__stderr__ else None
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
    finally:
        if filtered is not None:
            filtered.close()
        if quiet:
            # Put back as found: run in-process (tests, a notebook), the setting would otherwise pass to every
            # process started later, whose start-up lines would then not be filtered.
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return 0


#: lines TensorFlow's C++ code writes to standard error whatever ``TF_CPP_MIN_LOG_LEVEL`` says (they come before
#: it is read) and that say nothing wrong: its start-up notes, and a NodeDef attribute its tf.data Python code
#: sets and its C++ code does not know yet
HARMLESS = (
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"I\d{4} .* (port|cudart_stub|cpu_feature_guard)\.cc:\d+\] ",
    r"To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.",
    r"E\d{4} .* node_def_util\.cc:\d+\] NodeDef mentions attribute use_unbounded_threadpool which is not in the "
    r"op definition",
)
#: cuInit's failure is harmless only on a machine without a CUDA driver (cudart_stub says so first)
_NO_DRIVER = r"I\d{4} .* cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine"
_CUINIT = r"E\d{4} .* cuda_platform\.cc:\d+\] failed call to cuInit"


class _HarmlessLinesFilter:
    """Routes the process's standard error (file descriptor 2, which C++ code writes to) through a pipe and
    a thread that passes on every line except the :data:`HARMLESS` ones; :meth:`close` puts it back.

    Written by hand because the lines come from C++ before TensorFlow reads its log settings: no
    Python or TF setting reaches them. A partial line (a progress bar's ``\\r`` updates) is passed
    on at once unless it could be the start of one of those lines.
    """

    def __init__(self):
        import os
        import re
        import sys
        import threading

        sys.stderr.flush()
        self._harmless = re.compile("|".join(f"(?:{p})" for p in HARMLESS))
        self._no_driver, self._cuinit = re.compile(_NO_DRIVER), re.compile(_CUINIT)
        self._seen_no_driver = False
        self._original = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self._thread = threading.Thread(target=self._pump, args=(read,), daemon=True, name="stderr-filter")
        self._thread.start()

    def _drop(self, line):
        text = line.decode("utf-8", "replace")
        self._seen_no_driver = self._seen_no_driver or bool(self._no_driver.match(text))
        return bool(self._harmless.match(text) or (self._seen_no_driver and self._cuinit.match(text)))

    def _pump(self, read):
        import os

        pending = b""
        while chunk := os.read(read, 65536):
            *lines, pending = (pending + chunk).split(b"\n")
            out = b"".join(line + b"\n" for line in lines if not self._drop(line))
            if pending and not pending[:1] in (b"I", b"W", b"E", b"T"):  # not a log line's start: pass it on now
                out, pending = out + pending, b""
            if out and not self._write(out):
                break
        if pending and not self._drop(pending):
            self._write(pending)
        os.close(read)

    def _write(self, data):
        import os

        try:
            os.write(self._original, data)
            return True
        except OSError:  # closed by close() after a timeout (a child process kept the pipe open)
            return False

    def close(self):
        """Puts the original standard error back, after the lines written so far."""
        import os
        import sys

        sys.stderr.flush()
        os.dup2(self._original, 2)  # closes this process's last write end of the pipe: the thread reads to its end
        self._thread.join(timeout=10)
        os.close(self._original)
