"""Operator command: send failed notifications again.

    python -m notify.resend <notification-id>
    python -m notify.resend --reference <DOSSIER-CODE>
    (installed as ``notify-resend``; uses NOTIFY_DATABASE_URL)

The notifications go back to ``created`` with fresh attempts and a delivery
message each in the outbox: a running notify process sends them at once.
"""
import argparse
import sys

from sqlalchemy.orm import sessionmaker

from notify.commands import ResendNotifications
from notify.messagebus import MessageBus
from notify.unit_of_work import SqlUnitOfWork
from portal_shared.config import env_or
from portal_shared.db import UnitOfWork, create_db_engine


def main(argv=None):
    parser = argparse.ArgumentParser(prog="notify-resend", description="Queue failed notifications again.")
    parser.add_argument("notification_id", nargs="?", help="id of one notification")
    parser.add_argument("--reference", help="every failed notification of this reference (dossier code)")
    parser.add_argument("--database-url", default=env_or("NOTIFY_DATABASE_URL", "sqlite:///var/notify.db"))
    args = parser.parse_args(argv)
    if bool(args.notification_id) == bool(args.reference):
        parser.error("give either a notification id or --reference")
    engine = create_db_engine(args.database_url)
    uow = SqlUnitOfWork(UnitOfWork(sessionmaker(bind=engine, expire_on_commit=False), relay=None))
    try:
        resent = MessageBus(uow).handle(ResendNotifications(args.notification_id, args.reference))
    finally:
        uow.close()
        engine.dispose()
    for notification in resent:
        print(f"{notification.id} {notification.channel} {notification.template} {notification.reference}: "
              "queued again")
    if not resent:
        print("nothing to resend (no failed notification matches)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
