"""Shares of a ``py-spy record --format raw`` profile: which frames the busy samples were in.

    .venv/bin/python bench/profile_summary.py PROFILE.txt [--top 25] [--frame SUBSTRING ...]

A raw profile is one line per distinct stack, ``frame;frame;...;frame COUNT``. A frame's inclusive
share is the fraction of samples with that frame anywhere on the stack (counted once per sample);
``--frame`` adds the share of the samples with any frame containing SUBSTRING (e.g. ``pool_pre_ping``,
``mask_event``).
"""
import argparse
import re
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
    for marker in ("site-packages/", "services/", "shared/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


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
    args = parser.parse_args()
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
