"""Shares of a ``py-spy record --format raw`` profile: which frames the busy samples were in.

    .venv/bin/python bench/profile_summary.py PROFILE.txt [--top 25] [--frame SUBSTRING ...]

A raw profile is one line per distinct stack, ``frame;frame;...;frame COUNT``. A frame's inclusive
share is the fraction of samples with that frame anywhere on the stack (counted once per sample);
``--frame`` adds the share of the samples with any frame containing SUBSTRING (e.g. ``pool_pre_ping``,
``mask_event``).

``--by-package`` sorts every busy sample by whose code it was running (its innermost frame's package:
ours, Nameko, kombu/amqp, eventlet, SQLAlchemy, the database round trip, ...) and by whether any of
our frames was on the stack at all (a sample with none is the framework working on its own: consuming,
spawning workers, serving HTTP). That is the evidence for "what is left is the framework or the
database".
"""
import argparse
import re
import sys
from collections import Counter

FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def parse(path):
    """``[(frames, count)]`` of a raw profile; each frame ``function (file)`` without its line number."""
    stacks = []
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.rstrip("\n")
        if not line:
            continue
        text, _, count = line.rpartition(" ")
        frames = []
        for frame in text.split(";"):
            match = FRAME.match(frame)
            frames.append(f"{match['function']} ({_short(match['file'])})" if match else frame)
        stacks.append((frames, int(count)))
    return stacks


def _short(path):
    if not path.startswith("/"):
        return path  # py-spy already gave it relative to its package's root
    for marker in ("site-packages/", "services/", "shared/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


OURS = ("payment/", "dossier/", "notify/", "portal_sync/", "sandbox/", "portal_shared/")
# (category, first path components) in order; a frame's package is the first one whose prefix matches
PACKAGES = [
    ("ours", OURS),
    ("nameko", ("nameko/",)),
    ("kombu/amqp (AMQP client)", ("kombu/", "amqp/", "vine/", "pika/")),
    ("eventlet/greenlet (event loop, green I/O)", ("eventlet/", "greenlet/", "dns/")),
    ("sqlalchemy", ("sqlalchemy/",)),
    ("psycopg2", ("psycopg2/",)),
    ("werkzeug (HTTP)", ("werkzeug/",)),
    ("requests/urllib3 (HTTP client)", ("requests/", "urllib3/", "charset_normalizer/", "idna/")),
    ("structlog/logging", ("structlog/", ".11/logging/")),
    ("marshmallow", ("marshmallow/",)),
    ("jinja2/markupsafe", ("jinja2/", "markupsafe/")),
    ("jwt/cryptography", ("jwt/", "cryptography/")),
]
# SQLAlchemy's dialect methods that call the driver: a sample there is psycopg2's C code sending a
# statement and reading PostgreSQL's answer (py-spy without --native shows the last Python frame)
DRIVER_CALLS = {"do_execute", "do_executemany", "do_commit", "do_rollback", "do_close", "do_begin"}


def package(frame):
    function, _, rest = frame.partition(" (")
    path = rest.rstrip(")")
    if path.startswith("sqlalchemy/engine/default.py") and function.rpartition(".")[2] in DRIVER_CALLS:
        return "database round trip (psycopg2 C, PostgreSQL)"
    for name, prefixes in PACKAGES:
        if path.startswith(prefixes):
            return name
    top = path.split("/", 1)[0].removesuffix(".py")
    if top in sys.stdlib_module_names or path.startswith(("<frozen", ".11/")):
        return "python stdlib"
    if not frame:
        return "unattributed (no Python frame)"
    return "other"


def by_package(stacks):
    """``(total, [(package, share of samples whose innermost frame is in it)], share with our code on the stack)``."""
    total = sum(count for _, count in stacks) or 1
    own = Counter()
    with_ours = 0
    for stack, count in stacks:
        own[package(stack[-1])] += count
        if any(package(frame) == "ours" for frame in stack):
            with_ours += count
    return total, [(name, count / total) for name, count in own.most_common()], with_ours / total


def summary(stacks, top=25, frames=()):
    total = sum(count for _, count in stacks) or 1
    inclusive, own = Counter(), Counter()
    for stack, count in stacks:
        for frame in set(stack):
            inclusive[frame] += count
        own[stack[-1]] += count
    wanted = {name: sum(count for stack, count in stacks if any(name in frame for frame in stack)) / total
              for name in frames}
    return total, [(frame, count / total) for frame, count in inclusive.most_common(top)], \
        [(frame, count / total) for frame, count in own.most_common(top)], wanted


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--frame", action="append", default=[])
    parser.add_argument("--by-package", action="store_true", help="busy samples by the package running")
    args = parser.parse_args()
    if args.by_package:
        total, shares, with_ours = by_package(parse(args.profile))
        print(f"{total} busy samples\n\nown (innermost frame) share | package")
        for name, share in shares:
            print(f"{share:6.1%} | {name}")
        print(f"\n{with_ours:6.1%} of the samples have a frame of our code on the stack; "
              f"{1 - with_ours:6.1%} are the framework on its own (consuming, spawning workers, serving HTTP)")
        return
    total, inclusive, own, wanted = summary(parse(args.profile), args.top, args.frame)
    print(f"{total} busy samples\n\ninclusive share | frame")
    for frame, share in inclusive:
        print(f"{share:6.1%} | {frame}")
    print("\nown (leaf) share | frame")
    for frame, share in own:
        print(f"{share:6.1%} | {frame}")
    if wanted:
        print("\nsamples with a frame containing")
        for name, share in wanted.items():
            print(f"{share:6.1%} | {name}")


if __name__ == "__main__":
    main()
