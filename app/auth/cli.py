"""Manage API keys: ``python -m app.auth.cli create --tenant acme | list | revoke <key-id>``.

Talks to the Redis of ``PRUNEKIT_REDIS_URL`` (and ``PRUNEKIT_KEY_PREFIX``), like the service.
``create`` prints the secret once; only its SHA-256 is stored.
"""

from __future__ import annotations

import argparse
import json
import sys

from core.auth import keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.auth.cli", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create a key for a tenant; prints the secret once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", default="", help="a note, e.g. who uses the key")
    create.add_argument("--json", action="store_true", help="print id, tenant and key as JSON")
    lst = sub.add_parser("list", help="list keys (ids and tenants, never secrets)")
    lst.add_argument("--tenant")
    revoke = sub.add_parser("revoke", help="revoke a key by id; it stops working at once")
    revoke.add_argument("key_id")
    args = parser.parse_args(argv)

    try:
        if args.command == "create":
            api_key, secret = keys.create_key(args.tenant, args.name)
            if args.json:
                print(json.dumps({**api_key.as_dict(), "key": secret}))
            else:
                print(f"created key {api_key.id} for tenant {api_key.tenant}; it is shown once:")
                print(secret)
        elif args.command == "list":
            for k in keys.list_keys(args.tenant):
                print(f"{k.id}\t{k.tenant}\t{k.created_at}\t{k.name}")
        else:
            k = keys.revoke(args.key_id)
            print(f"revoked key {k.id} of tenant {k.tenant}")
    except keys.KeyError_ as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
