"""`gateway keys|usage|db ...`: parse the command line, load the config, run one command."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import sys
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from ..config import ConfigError, GatewayConfig, load_config
from ..config.ledger import parse_budget_text
from ..config.secrets import mask_url
from ..errors import GatewayError
from ..ledger.engine import create_engine, migrate
from ..ledger.keys import MOST_STORED_LIMIT
from ..ledger.writer import reason
from . import keys, usage

SINCE = re.compile(r"([0-9]+)([mhd])")
UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def stored_limit(text: str) -> int:
    """A key's limit as a database key holds it: an integer from 1 to MOST_STORED_LIMIT."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 1 <= value <= MOST_STORED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MOST_STORED_LIMIT}, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="gateway", description="The gateway's ledger: keys, usage, schema.")
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", help="gateway.yaml to use (default: $GATEWAY_CONFIG, else ./gateway.yaml)")
    commands = top.add_subparsers(dest="command", required=True)

    key_commands = commands.add_parser("keys", help="client keys in the ledger").add_subparsers(
        dest="action", required=True
    )
    create = key_commands.add_parser("create", parents=[config], help="give out a new key; prints its secret")
    create.add_argument("--id", required=True, help="the key's name in logs, metrics and reports")
    create.add_argument("--models", action="append", help="a route name or glob it may use (repeat; default: all)")
    create.add_argument("--rpm", type=stored_limit, help="requests per minute")
    create.add_argument("--tpm", type=stored_limit, help="tokens per minute")
    create.add_argument("--max-parallel", type=stored_limit, help="requests in flight at once")
    create.add_argument("--budget", help="USD per period: 50/30d, 5/1d, 200/month")
    key_commands.add_parser("list", parents=[config], help="the keys of gateway.yaml and of the ledger")
    revoke = key_commands.add_parser("revoke", parents=[config], help="revoke a key on every replica")
    revoke.add_argument("id")

    report = commands.add_parser(
        "usage", parents=[config], help="requests, tokens and cost by key, route, model or day"
    )
    report.add_argument("--since", default="24h", help="how far back: 30m, 24h, 7d, or an ISO 8601 time (default 24h)")
    report.add_argument("--by", default="key", choices=("key", "route", "model", "day"))

    db = commands.add_parser("db", help="the ledger's database").add_subparsers(dest="action", required=True)
    db.add_parser("migrate", parents=[config], help="create or update the ledger's schema")
    return top


def main(argv: list[str]) -> int:
    """Run the command in `argv` (its first word one of SUBCOMMANDS); returns the exit status."""
    args = parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    try:
        work = command(args, config)
    except ValueError as exc:
        print(f"gateway {args.command}: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run(config, work))


def command(args: argparse.Namespace, config: GatewayConfig) -> Callable[[AsyncEngine], Awaitable[int]] | None:
    """The work the arguments ask for (None: only the migration); raises ValueError for a bad argument."""
    if args.command == "keys" and args.action == "create":
        budget = parse_budget_text(args.budget) if args.budget else None
        limits = {"rpm": args.rpm, "tpm": args.tpm, "max_parallel": args.max_parallel}
        for name, value in limits.items():
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        return lambda engine: keys.create(engine, config, args.id, args.models, limits, budget)
    if args.command == "keys" and args.action == "list":
        return lambda engine: keys.show_all(engine, config)
    if args.command == "keys":
        return lambda engine: keys.revoke(engine, config, args.id)
    if args.command == "usage":
        start = since(args.since, dt.datetime.now(dt.UTC))
        return lambda engine: usage.show(engine, start, args.by)
    return None


def since(text: str, now: dt.datetime) -> dt.datetime:
    """`30m`, `24h`, `7d` before `now`, or an ISO 8601 time (UTC when it names no zone)."""
    found = SINCE.fullmatch(text.strip())
    if found:
        return now - dt.timedelta(**{UNITS[found.group(2)]: int(found.group(1))})
    try:
        parsed = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since must be like 30m, 24h, 7d or an ISO 8601 time; got {text!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


async def run(config: GatewayConfig, work: Callable[[AsyncEngine], Awaitable[int]] | None) -> int:
    """Open the ledger (migrated first, as the server does), do the work, close it."""
    engine = create_engine(config.ledger)
    try:
        before, after = await migrate(engine)
        if work is None:
            where = mask_url(config.ledger.url)
            if before == after:
                print(f"ledger {where}: the schema is up to date (version {after})")
            else:
                print(f"ledger {where}: the schema migrated from {before or 'nothing'} to version {after}")
            return 0
        return await work(engine)
    except GatewayError as exc:
        print(f"gateway: {exc.message}", file=sys.stderr)
        return 1
    except Exception as exc:  # the database: unreachable, refused
        print(f"gateway: the ledger at {mask_url(config.ledger.url)} failed: {reason(exc)}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
