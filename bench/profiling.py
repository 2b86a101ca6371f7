"""``py-spy record`` of the stack's processes while a bench section measures (``--profile``)."""
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path


class Profiler:
    """``py-spy record`` of each process of ``services`` while a section measures (``--profile DIR``,
    ``--profile-services``): raw collapsed stacks of the busy samples, one file per process, summed up by
    ``bench/profile_summary.py``."""

    def __init__(self, stack, directory, services="payment"):
        self.records = []
        if not directory:
            return
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        Path(directory).mkdir(parents=True, exist_ok=True)
        for process in stack.processes:
            if services == "all" or process.name in services.split(","):
                output = Path(directory) / f"{process.label}.txt"
                command = [py_spy, "record", "--pid", str(process.popen.pid), "--format", "raw", "--rate", "200",
                           "--nonblocking", "--gil", "--output", str(output)]
                self.records.append((output, subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                                              stderr=subprocess.STDOUT)))
        time.sleep(1.0)  # attached before the first request

    def stop(self):
        for _, recorder in self.records:
            recorder.send_signal(signal.SIGINT)
        for _, recorder in self.records:
            recorder.wait(30)
        return [str(output) for output, _ in self.records]
