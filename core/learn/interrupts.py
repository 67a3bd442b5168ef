"""A stop asked for during training takes effect between two batches.

Python runs a signal's handler at whatever bytecode the main thread is at. A KeyboardInterrupt
raised there can land inside a finalizer (a progress bar's or a generator's ``__del__``),
where Python prints "Exception ignored" and carries on: the Ctrl-C is lost and the run
trains to its end. So while training, Ctrl-C, SIGTERM and SIGHUP only set a flag; the loop
looks at it after each batch and each epoch's end (``check``), and then the signal is
handed to the handler it had before, which raises the KeyboardInterrupt the loop
turns into a checkpoint. A second signal before that is delivered at once: a step that
hangs can still be stopped.
"""

import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class BetweenBatches:
    """``with BetweenBatches() as stops: ... stops.check()``: the signals of SIGNALS whose
    handler is Python's (those that raise) are held until ``check`` or the end of the block.
    Outside the main thread, where no handler can be set, it holds nothing."""

    def __init__(self):
        self.previous = {}
        self.pending = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for number in SIGNALS:
                if callable(handler := signal.getsignal(number)):
                    self.previous[number] = handler
                    signal.signal(number, self.hold)
        return self

    def hold(self, number, frame):
        if self.pending is not None:  # asked twice: now
            self.deliver(number, frame)
        self.pending = number

    def deliver(self, number, frame=None):
        """Give the signals their handlers back, and call the held one's (which raises)."""
        handler = self.previous[number]
        self.release()
        self.pending = None
        handler(number, frame)

    def release(self):
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        self.previous = {}

    def check(self):
        """Deliver a held signal now."""
        if self.pending is not None:
            self.deliver(self.pending)

    def __exit__(self, *exc):
        if exc[0] is None and self.pending is not None:
            self.deliver(self.pending)
        self.release()
