"""Signals as a terminal delivers them, for the tests that press Ctrl-C on a real process."""
import signal


def sigint_as_at_a_terminal():
    """``preexec_fn``: SIGINT back to its default action in the child. A test run started in the
    background (bash's ``cmd &`` without job control, as CI scripts may) inherits SIGINT ignored,
    and Python then installs no KeyboardInterrupt handler: the Ctrl-C under test would be lost."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
