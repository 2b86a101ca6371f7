"""Server-to-server callbacks (IPNs, delivery receipts), retried in the background like the providers do."""
import threading
import time

import requests


def deliver(store, kind, method, url, payload, accepted, attempts=5, retry_seconds=2.0, delay=0.0, as_json=False,
            background=False):
    """Send one callback; the first attempt runs now (unless ``background``), retries in a thread.

    ``accepted(response)`` says whether the receiver took it; a provider retries otherwise.
    """

    def attempt():
        try:
            if method == "GET":
                response = requests.get(url, params=payload, timeout=15)
            elif as_json:
                response = requests.post(url, json=payload, timeout=15)
            else:
                response = requests.post(url, data=payload, timeout=15)
        except requests.RequestException as exc:
            store.add_callback(kind, url, payload, None, f"{type(exc).__name__}")
            return False
        try:
            answer = response.json()
        except ValueError:
            answer = response.text[:500]
        store.add_callback(kind, url, payload, response.status_code, answer)
        return accepted(response)

    def retry_loop(first_done):
        if delay:
            time.sleep(delay)
        remaining = attempts - (1 if first_done else 0)
        wait = retry_seconds
        for _ in range(remaining):
            if not first_done:
                first_done = True
                if attempt():
                    return
                continue
            time.sleep(wait)
            wait *= 2
            if attempt():
                return

    if background or delay:
        threading.Thread(target=retry_loop, args=(False,), daemon=True).start()
        return None
    if attempt():
        return True
    threading.Thread(target=retry_loop, args=(True,), daemon=True).start()
    return False
