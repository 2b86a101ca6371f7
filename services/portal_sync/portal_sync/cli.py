"""``portal-sync``: the operator's commands for the national portal synchronisation.

    portal-sync stats                        synced / pending / parked / oldest pending age
    portal-sync parked [--json]              dossiers parked after a refusal, with the portal's answer
    portal-sync retry CODE... | --all        unpark and deliver from where it stopped
    portal-sync resend CODE... [--from-scratch]
                                             read the dossier again and send its record (from scratch:
                                             as new, with every history entry, for a portal that lost it)
    portal-sync backfill [--page-size N] [--restart]
                                             track every existing dossier (resumable; progress bar)
    portal-sync drift [--sample N | --all]   TraCuuHoSo and resend what differs at the portal
    portal-sync catalogue                    LayThuTuc for each catalogue procedure: unknown national codes
                                             (which the portal would refuse) before any dossier is parked

Configured by the service's environment variables (``PORTAL_SYNC_DATABASE_URL``,
``AMQP_URI``, ``NATIONAL_PORTAL_*``). The running service does the sending:
these commands only change what is due (drift also asks the portal; backfill
reads the dossier service over Nameko RPC).
"""
import argparse
import json
import os
import sys

from sqlalchemy.orm import sessionmaker
from tqdm import tqdm

from portal_shared.config import env_or
from portal_shared.db import UnitOfWork, create_db_engine
from portal_shared.logs import configure_logging
from portal_shared.migrations import upgrade_database
from portal_shared.validation import MAX_PAGE  # dossier's largest list_dossiers page
from portal_sync import use_cases
from portal_sync.catalogue import NationalCodes
from portal_sync.commands import CheckDrift, FinishBackfill, Release, TrackBackfillPage
from portal_sync.client import NationalPortalClient, PortalError, PortalSettings
from portal_sync.dossiers import DossierUnavailable
from portal_sync.messagebus import MessageBus
from portal_sync.unit_of_work import SqlUnitOfWork

DEFAULT_DATABASE_URL = "sqlite:///var/portal_sync.db"
CONFIG_KEYS = ("NATIONAL_PORTAL_URL", "NATIONAL_PORTAL_AUTH_PATH", "NATIONAL_PORTAL_INTEGRATION_PATH",
               "NATIONAL_PORTAL_USERNAME", "NATIONAL_PORTAL_PASSWORD", "NATIONAL_PORTAL_AGENCY_CODE",
               "PORTAL_SYNC_HTTP_TIMEOUT_SECONDS", "DOSSIER_PROCEDURES_FILE")


def environment_config(environ=None):
    env = os.environ if environ is None else environ
    config = {key: env.get(key, "") for key in CONFIG_KEYS}
    config["AMQP_URI"] = env.get("AMQP_URI") or "amqp://guest:guest@localhost:5672/"
    return config


def open_database(url=None):
    engine = create_db_engine(url or env_or("PORTAL_SYNC_DATABASE_URL", DEFAULT_DATABASE_URL))
    upgrade_database(engine, "portal_sync:migrations")
    return engine, UnitOfWork(sessionmaker(bind=engine, expire_on_commit=False), None)


def run_backfill(uow, directory, page_size=MAX_PAGE, restart=False, out=sys.stdout, progress=True):
    """Track every dossier of the dossier service, page by page; resumes where a killed run stopped."""
    if restart:
        MessageBus(uow).handle(FinishBackfill(restart=True))
    cursor, _, finished = use_cases.backfill_position(uow)
    if finished is not None:
        print(f"backfill already finished ({cursor} dossiers); --restart to run it again", file=out)
        return 0
    if cursor:
        print(f"resuming the backfill at dossier {cursor}", file=out)
    added = 0

    def read(offset):
        # A connection (and so a caller token) per page: a backfill of millions outlives any token.
        with directory.open() as dossiers:
            return dossiers.page(page_size, offset)

    page = read(cursor)
    with tqdm(total=page["total"], initial=min(cursor, page["total"]), unit="dossier", disable=not progress,
              file=sys.stderr, desc="backfill") as bar:
        while page["items"]:
            cursor += len(page["items"])
            added += MessageBus(uow).handle(TrackBackfillPage(page["items"], cursor, page["total"]))
            bar.total = page["total"]
            bar.update(len(page["items"]))
            if cursor >= page["total"]:
                break
            page = read(cursor)
    MessageBus(uow).handle(FinishBackfill())
    print(f"backfill finished: {cursor} dossiers read, {added} newly tracked", file=out)
    return added


def run_drift(uow, client, sample=None, out=sys.stdout, progress=True):
    """Check a sample (or every synchronised dossier) at the portal; returns the merged report."""
    report = {"checked": 0, "lost": [], "differ": []}
    bus = MessageBus(uow, client=client)

    def merge(part):
        report["checked"] += part["checked"]
        report["lost"] += part["lost"]
        report["differ"] += part["differ"]

    if sample:
        merge(bus.handle(CheckDrift(use_cases.drift_candidates(uow, sample=sample))))
    else:
        total = use_cases.sync_stats(uow)["synced"]
        after = None
        with tqdm(total=total, unit="dossier", disable=not progress, file=sys.stderr, desc="drift") as bar:
            while True:
                candidates = use_cases.drift_candidates(uow, after=after)
                if not candidates:
                    break
                after = candidates[-1][0]
                merge(bus.handle(CheckDrift(candidates)))
                bar.update(len(candidates))
    print(f"checked {report['checked']}: {len(report['lost'])} unknown to the portal, "
          f"{len(report['differ'])} in another status; all of them resent", file=out)
    for code in report["lost"]:
        print(f"  {code}: unknown to the portal", file=out)
    for item in report["differ"]:
        print(f"  {item['dossier_code']}: portal {item['portal'] or '-'}, ours {item['ours']}", file=out)
    return report


def run_catalogue_check(codes, client, out=sys.stdout):
    """Look every catalogue procedure up at the portal; returns the procedure codes it does not know."""
    unknown = []
    for procedure_code in codes.procedure_codes():
        procedure = codes.procedure(procedure_code)
        found = client.procedure(procedure.national_code)
        if not found:
            unknown.append(procedure_code)
            print(f"{procedure_code}: MaTTHC {procedure.national_code} unknown to the portal", file=out)
            continue
        fields = found.get("LINHVUCTHUCHIEN") or [{}]
        field = fields[0] if isinstance(fields, list) and fields else {}
        print(f"{procedure_code}: MaTTHC {procedure.national_code} = {found.get('TENTTHC', '')}"
              f" (MaLinhVuc {field.get('MALINHVUC', '') or '-'}; ours {procedure.field_code or '-'})", file=out)
    print(f"{len(unknown)} of {len(codes.procedure_codes())} procedures unknown to the portal", file=out)
    return unknown


def parser():
    root = argparse.ArgumentParser(prog="portal-sync", description=__doc__.split("\n\n")[0])
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser("stats", help="synced, pending, parked, oldest pending age")
    parked = commands.add_parser("parked", help="list parked dossiers")
    parked.add_argument("--json", action="store_true")
    retry = commands.add_parser("retry", help="unpark and deliver from where it stopped")
    retry.add_argument("codes", nargs="*")
    retry.add_argument("--all", action="store_true", help="every parked dossier")
    resend = commands.add_parser("resend", help="send a dossier's record again")
    resend.add_argument("codes", nargs="+")
    resend.add_argument("--from-scratch", action="store_true", help="as new, with every history entry")
    backfill = commands.add_parser("backfill", help="track every existing dossier")
    backfill.add_argument("--page-size", type=int, default=MAX_PAGE, choices=range(1, MAX_PAGE + 1),
                          metavar=f"1..{MAX_PAGE}")
    backfill.add_argument("--restart", action="store_true", help="start over instead of resuming")
    backfill.add_argument("--no-progress", action="store_true")
    drift = commands.add_parser("drift", help="look dossiers up at the portal and resend those that differ")
    scope = drift.add_mutually_exclusive_group()
    scope.add_argument("--sample", type=int, default=100, help="how many synchronised dossiers (default 100)")
    scope.add_argument("--all", action="store_true", help="every synchronised dossier")
    drift.add_argument("--no-progress", action="store_true")
    commands.add_parser("catalogue", help="check the catalogue's national codes at the portal (LayThuTuc)")
    return root


def main(argv=None, out=sys.stdout):
    args = parser().parse_args(argv)
    configure_logging(fmt=os.environ.get("LOG_FORMAT") or "console")
    engine, database = open_database()
    uow = SqlUnitOfWork(database)
    config = environment_config()
    try:
        if args.command == "stats":
            print(json.dumps(use_cases.sync_stats(uow)), file=out)
        elif args.command == "parked":
            parked = use_cases.list_parked(uow)
            if args.json:
                print(json.dumps(parked, ensure_ascii=False, indent=1), file=out)
            for item in [] if args.json else parked:
                print(f"{item['dossier_code']}  parked {item['parked_at']}  status {item['status']}  "
                      f"{item['reason']}", file=out)
            if not parked and not args.json:
                print("no parked dossier", file=out)
        elif args.command == "retry":
            if not args.codes and not args.all:
                print("portal-sync retry: name dossier codes or --all", file=sys.stderr)
                return 2
            released = MessageBus(uow).handle(Release(None if args.all else tuple(args.codes)))
            print(f"released {len(released)}: {' '.join(released)}", file=out)
        elif args.command == "resend":
            released = MessageBus(uow).handle(Release(tuple(args.codes), resend=True, from_scratch=args.from_scratch))
            print(f"resending {len(released)}: {' '.join(released)}", file=out)
            unknown = sorted(set(args.codes) - set(released))
            if unknown:
                print(f"not tracked (run backfill first): {' '.join(unknown)}", file=sys.stderr)
                return 1
        elif args.command == "backfill":
            from portal_sync.providers import DossierDirectory  # Nameko's RPC client: only this command calls dossier

            run_backfill(uow, DossierDirectory(config), args.page_size, args.restart, out=out,
                         progress=not args.no_progress)
        elif args.command in ("drift", "catalogue"):
            settings = PortalSettings.from_config(config)
            if not settings.configured:
                print(f"portal-sync {args.command}: NATIONAL_PORTAL_URL is not set", file=sys.stderr)
                return 2
            if args.command == "catalogue":
                codes = NationalCodes.load(os.environ.get("DOSSIER_PROCEDURES_FILE"))
                return 1 if run_catalogue_check(codes, NationalPortalClient(settings), out=out) else 0
            run_drift(uow, NationalPortalClient(settings), None if args.all else args.sample, out=out,
                      progress=not args.no_progress)
        return 0
    except (DossierUnavailable, PortalError) as exc:
        print(f"portal-sync {args.command}: {exc}", file=sys.stderr)
        return 1
    finally:
        database.close()
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
