"""Debian's nginx in front of the services, configured with infra/nginx/edge.conf.template.

The template is rendered as the official nginx image renders it (``${VAR}``
replaced by its value) and included in a minimal main configuration of our
own (pid file, logs and temporary files in a scratch folder), then nginx runs
in the foreground as a child of the test.
"""
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "nginx" / "edge.conf.template"
CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")


def nginx_binary():
    for candidate in (os.environ.get("NGINX_BINARY"), *CANDIDATES, shutil.which("nginx")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def render(template_text, values):
    """``${NAME}`` → value for every name given; any other ``${...}`` left is an error (a forgotten variable)."""
    text = template_text
    for name, value in values.items():
        text = text.replace("${" + name + "}", str(value))
    left = re.findall(r"\$\{([A-Z0-9_]+)\}", text)
    if left:
        raise ValueError(f"template variables without a value: {sorted(set(left))}")
    return text


MAIN = """\
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log info;
{user}
events {{ worker_connections 1024; }}
http {{
    access_log {work}/access.log;
    client_body_temp_path {work}/client_body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    include {work}/edge.conf;
}}
"""


class Edge:
    """One nginx process rendering the edge template with ``values``; ``url`` is its address."""

    def __init__(self, work_dir, port, payment_upstream, notify_upstream, rate_per_second=20, burst=40,
                 connections_per_client=20):
        self.binary = nginx_binary()
        if self.binary is None:
            raise RuntimeError("nginx not found (apt-get install nginx-light; .ci/run does it)")
        self.work = Path(work_dir)
        self.work.mkdir(parents=True, exist_ok=True)
        os.chmod(self.work, 0o777)  # the worker process may run as another user than the master
        self.port = port
        self.values = {
            "EDGE_LISTEN": f"127.0.0.1:{port}",
            "PAYMENT_UPSTREAM": payment_upstream,
            "NOTIFY_UPSTREAM": notify_upstream,
            "EDGE_RATE_PER_SECOND": rate_per_second,
            "EDGE_BURST": burst,
            "EDGE_CONNECTIONS_PER_CLIENT": connections_per_client,
        }
        self.process = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=15):
        (self.work / "edge.conf").write_text(render(TEMPLATE.read_text(), self.values))
        user = "user root root;" if os.geteuid() == 0 else ""
        (self.work / "nginx.conf").write_text(MAIN.format(work=self.work, user=user))
        test = subprocess.run([self.binary, "-t", "-p", str(self.work), "-c", str(self.work / "nginx.conf")],
                              capture_output=True, text=True)
        if test.returncode != 0:
            raise RuntimeError(f"nginx -t refused the configuration:\n{test.stderr}")
        self.log = open(self.work / "nginx.out", "wb")
        self.process = subprocess.Popen([self.binary, "-p", str(self.work), "-c", str(self.work / "nginx.conf")],
                                        stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                requests.get(f"{self.url}/", timeout=1)
                return self
            except requests.RequestException:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start: {self.tail()}")
                time.sleep(0.1)

    def tail(self):
        parts = []
        for name in ("nginx.out", "error.log"):
            path = self.work / name
            if path.exists():
                parts.append(path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGQUIT)  # graceful: finish answers, then exit
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        if self.process is not None:
            self.log.close()
