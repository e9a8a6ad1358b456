"""Running the queues in a process: consumers that leave the stop signals to their owner, a graceful
stop bounded in time, and settle delays too short for Huey's once-a-second schedule."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable

from huey import Huey
from huey.consumer import Consumer

log = logging.getLogger(__name__)


def start_consumer(huey: Huey, **options) -> Consumer:
    """Start ``huey``'s consumer threads in the background; the process's signal handlers stay as
    they were. Huey's ``Consumer.start()`` takes SIGTERM/SIGINT/SIGHUP for the consumer whose
    ``run()`` loop acts on them: a consumer that is only started (the ManyChat lane of ``engine
    worker``, the in-process worker of ``engine serve``) would swallow a stop signal sent before
    the process's own handler (the main consumer's, uvicorn's) is in place, and the process would
    not stop."""
    taken = [getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)]
    before = {signum: signal.getsignal(signum) for signum in taken}
    consumer = huey.create_consumer(**options)
    # Held while Huey's handlers are in place: one arriving then reaches the process's own handler.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, taken)
    try:
        consumer.start()
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    return consumer


class StopDeadline:
    """A stop that ends the process within ``seconds`` whatever its threads are doing.

    :meth:`begin` (on the stop signal) tells the runtime to stop waiting (``rt.stopping``) and
    arms a timer: the consumers get ``seconds`` to let their running tasks finish; past that the
    process exits at once. Nothing is lost by it: an unfinished task's event stays ``received``
    or ``processing`` in the database (the sweep queues it again), and the database drops the
    process's locks with its connections.
    """

    def __init__(self, seconds: float, on_begin: Callable[[], object] = lambda: None):
        self.seconds = seconds
        self._on_begin = on_begin
        self._began: float | None = None
        self._lock = threading.Lock()

    def begin(self) -> None:
        with self._lock:
            if self._began is not None:
                return
            self._began = time.monotonic()
        self._on_begin()
        timer = threading.Timer(self.seconds, self._exit)
        timer.daemon = True
        timer.start()

    def left(self) -> float:
        """Seconds left before the exit (the whole budget before :meth:`begin`)."""
        if self._began is None:
            return self.seconds
        return max(self.seconds - (time.monotonic() - self._began), 0.0)

    def _exit(self) -> None:
        log.warning("still busy %.0f s after the stop signal: exiting; unfinished work stays queued", self.seconds)
        logging.shutdown()
        os._exit(0)


class StoppingConsumer(Consumer):
    """Huey's consumer, where SIGTERM (like SIGINT) is a graceful stop bounded by a
    :class:`StopDeadline`: no new task is taken, running ones may finish until the deadline."""

    def __init__(self, huey: Huey, *, deadline: StopDeadline, **options):
        self.deadline = deadline
        super().__init__(huey, graceful_signal="TERM", shutdown_timeout=deadline.seconds, **options)

    def _handle_signal(self, signum, frame) -> None:
        if signum != getattr(signal, "SIGHUP", None):  # SIGHUP restarts the consumer, it is no stop
            self.deadline.begin()
        super()._handle_signal(signum, frame)


class ShortDelays:
    """Events due again within a few seconds (a settling webhook), queued by this process on time.

    Huey holds a delayed task in its schedule, which its scheduler reads once a second, so a 2 s
    settle window would end up to a second late. A worker process (:meth:`start`) queues them
    itself from a timer thread at their time. On a stop (:meth:`flush`) those not yet due go to
    Huey's schedule; a process killed outright leaves them to the sweep (STUCK_AFTER_SECONDS).
    """

    LONGEST = 10.0  # seconds; a longer delay goes to Huey's schedule as before

    def __init__(self, enqueue: Callable[[int, int], None], schedule: Callable[[int, float, int], None]) -> None:
        self._enqueue = enqueue  # (event id, priority): queue it now
        self._schedule = schedule  # (event id, delay, priority): to Huey's schedule
        self._lock = threading.Lock()
        self._due: dict[int, tuple[float, int]] = {}  # event id -> (monotonic due time, priority)
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="short-delays", daemon=True)
                self._thread.start()

    def take(self, event_id: int, delay: float, priority: int) -> bool:
        """Whether this process queues the event itself (started, and the delay is short)."""
        if self._thread is None or delay > self.LONGEST:
            return False
        with self._wake:
            due = time.monotonic() + max(delay, 0.0)
            earlier = self._due.get(event_id)
            self._due[event_id] = (min(due, earlier[0]) if earlier else due, priority)
            self._wake.notify()
        return True

    def flush(self) -> None:
        """Hand what is not due yet to Huey's schedule (the process is stopping)."""
        with self._wake:
            pending, self._due = self._due, {}
            self._thread = None  # later delays go to Huey's schedule
            self._wake.notify()
        now = time.monotonic()
        for event_id, (due, priority) in pending.items():
            self._schedule(event_id, due - now, priority)

    def _run(self) -> None:
        me = threading.current_thread()
        while True:
            with self._wake:
                if self._thread is not me:
                    return
                now = time.monotonic()
                ready = [(event_id, priority) for event_id, (due, priority) in self._due.items() if due <= now]
                for event_id, _ in ready:
                    del self._due[event_id]
                if not ready:
                    self._wake.wait(min((due for due, _ in self._due.values()), default=now + 1.0) - now)
                    continue
            for event_id, priority in ready:
                self._enqueue(event_id, priority)
