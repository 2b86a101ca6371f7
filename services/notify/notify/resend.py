"""Operator command: send failed notifications again.

    python -m notify.resend <notification-id>
    python -m notify.resend --reference <DOSSIER-CODE>
    (installed as ``notify-resend``; uses NOTIFY_DATABASE_URL)

The notifications go back to ``created`` with fresh attempts; a running
notify process picks them up at its next timer tick.
"""
import argparse
import sys

from notify import use_cases
from portal_shared.config import env_or
from portal_shared.db import UnitOfWork, create_db_engine
from sqlalchemy.orm import sessionmaker


def main(argv=None):
    parser = argparse.ArgumentParser(prog="notify-resend", description="Queue failed notifications again.")
    parser.add_argument("notification_id", nargs="?", help="id of one notification")
    parser.add_argument("--reference", help="every failed notification of this reference (dossier code)")
    parser.add_argument("--database-url", default=env_or("NOTIFY_DATABASE_URL", "sqlite:///var/notify.db"))
    args = parser.parse_args(argv)
    if bool(args.notification_id) == bool(args.reference):
        parser.error("give either a notification id or --reference")
    engine = create_db_engine(args.database_url)
    uow = UnitOfWork(sessionmaker(bind=engine, expire_on_commit=False), relay=None)
    try:
        rows = use_cases.resend(uow, notification_id=args.notification_id, reference=args.reference)
    finally:
        uow.close()
        engine.dispose()
    for row in rows:
        print(f"{row.id} {row.channel} {row.template} {row.reference}: queued again")
    if not rows:
        print("nothing to resend (no failed notification matches)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
