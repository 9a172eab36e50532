"""Suite-wide set-up."""

import signal


def pytest_configure(config):
    # A shell starts background jobs (`cmd &` in a script, nohup) with SIGINT ignored, and Python
    # then leaves it ignored: the Ctrl-C tests would see no KeyboardInterrupt, and the processes
    # they start would inherit the ignored SIGINT. Give this process Python's default handler.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
