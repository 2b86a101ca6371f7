#!/usr/bin/env python3
"""Print the RabbitMQ ``password_hash`` of a password (rabbit_password_hashing_sha256).

    python3 infra/rabbitmq/hash_password.py 'the-new-password'

Same result as ``rabbitmqctl hash_password``: base64(salt + sha256(salt + password))
with a random 4-byte salt. Paste the output into ``definitions.json``.
"""
import base64
import hashlib
import os
import sys


def rabbit_sha256_hash(password, salt=None):
    salt = os.urandom(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode("utf-8")).digest()).decode("ascii")


def check_password(password, password_hash):
    """True if ``password`` matches a rabbit_password_hashing_sha256 hash."""
    raw = base64.b64decode(password_hash)
    return rabbit_sha256_hash(password, raw[:4]) == password_hash


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(rabbit_sha256_hash(sys.argv[1]))
