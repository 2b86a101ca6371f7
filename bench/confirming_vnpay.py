"""A fake VNPay for the reconciliation bench that confirms the payments the file fixes.

    python bench/confirming_vnpay.py FIRST LAST CREATED_AT_ISO

Knows ``B<FIRST>``..``B<LAST>`` as paid (amounts as the bench's ``amount_of``),
prints its API URL on one line, then serves querydr until killed. A process of
its own: its server runs on eventlet, the bench waits on ``wait4``.
"""
import eventlet

eventlet.monkey_patch()

import sys  # noqa: E402
from datetime import datetime  # noqa: E402

from sandbox.fakes import FakeVnpay  # noqa: E402
from payment.use_cases import order_info  # noqa: E402


def main():
    first, last, created_at = int(sys.argv[1]), int(sys.argv[2]), datetime.fromisoformat(sys.argv[3])
    fake = FakeVnpay().start()
    for i in range(first, last + 1):
        fake.settled(f"B{i:09d}", 10_000 * (1 + i % 50), created_at, order_info(f"D{i:09d}"),
                     transaction_no=str(50_000_000 + i))
    print(fake.api_url, fake.tmn_code, fake.hash_secret, flush=True)
    while True:
        eventlet.sleep(3600)


if __name__ == "__main__":
    main()
