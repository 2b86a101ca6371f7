"""A dependency provider that runs one loop in a managed thread of its container."""
from nameko.extensions import DependencyProvider


class BackgroundLoop(DependencyProvider):
    """Runs ``loop()`` in a managed thread from ``start`` until ``stop`` or ``kill``.

    Subclasses name the thread (``thread_name``), implement ``loop`` and call
    ``super().setup()`` / ``super().start()`` when they extend those.
    """

    thread_name = "background_loop"

    def setup(self):
        self._thread = None

    def start(self):
        self._thread = self.container.spawn_managed_thread(self.loop, identifier=self.thread_name)

    def stop(self):
        if self._thread is not None:
            self._thread.kill()
            self._thread = None

    def kill(self):
        self.stop()

    def loop(self):
        raise NotImplementedError
