"""Keys and teams from a shell, for operators who script them: the gateway's admin API with the master
key (``MODELROUTER_URL``, default http://127.0.0.1:8000; ``MODELROUTER_MASTER_KEY``).

    python -m scripts.keys create --name ci-bot --daily-budget 5 --models gpt-4o-mini
    python -m scripts.keys list [--team TEAM_ID] [--page N]
    python -m scripts.keys get KEY_ID
    python -m scripts.keys update KEY_ID --rpm 60 --tpm none
    python -m scripts.keys revoke KEY_ID
    python -m scripts.keys rotate KEY_ID [--grace 3600]
    python -m scripts.keys team-create --name search --monthly-budget 100

``create`` and ``rotate`` print the secret once, on its own line first (so ``| head -1`` takes it),
then the key's record as JSON; nothing else ever shows it. Exit status: 0 done, 1 refused (the API's
error on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import httpx

LIMITS = (("rpm", int), ("tpm", int), ("max_parallel", int), ("daily_budget_usd", float), ("monthly_budget_usd", float))
FLAGS = {
    "daily_budget_usd": "--daily-budget",
    "monthly_budget_usd": "--monthly-budget",
    "max_parallel": "--max-parallel",
}


def _limit(kind: type) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() == "none" else kind(text)  # "none" clears it (update)

    return parse


def _add_limits(parser: argparse.ArgumentParser) -> None:
    for field, kind in LIMITS:
        parser.add_argument(FLAGS.get(field, f"--{field}"), dest=field, type=_limit(kind), default=argparse.SUPPRESS)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scripts.keys", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("create", "update"):
        sub = commands.add_parser(name)
        if name == "update":
            sub.add_argument("id")
        sub.add_argument("--name", required=name == "create", default=argparse.SUPPRESS)
        sub.add_argument("--team", dest="team_id", default=argparse.SUPPRESS)
        sub.add_argument("--owner", default=argparse.SUPPRESS)
        sub.add_argument("--role", choices=("client", "ops"), default=argparse.SUPPRESS)
        sub.add_argument("--models", type=lambda v: [m for m in v.split(",") if m], default=argparse.SUPPRESS)
        sub.add_argument("--expires-at", dest="expires_at", default=argparse.SUPPRESS, help="ISO 8601")
        _add_limits(sub)
    listing = commands.add_parser("list")
    listing.add_argument("--team", dest="team_id")
    listing.add_argument("--page", type=int, default=1)
    for name in ("get", "revoke"):
        commands.add_parser(name).add_argument("id")
    rotate = commands.add_parser("rotate")
    rotate.add_argument("id")
    rotate.add_argument(
        "--grace", dest="grace_period_s", type=int, default=0, help="seconds the old secret stays valid"
    )
    team = commands.add_parser("team-create")
    team.add_argument("--name", required=True)
    _add_limits(team)
    return parser


def _request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None, dict[str, str]]:
    fields = {k: v for k, v in vars(args).items() if k not in ("command", "id", "page")}
    match args.command:
        case "create":
            return "POST", "/admin/keys", fields, {}
        case "update":
            return "PATCH", f"/admin/keys/{args.id}", fields, {}
        case "list":
            query = {"page": str(args.page)} | ({"team_id": args.team_id} if args.team_id else {})
            return "GET", "/admin/keys", None, query
        case "get":
            return "GET", f"/admin/keys/{args.id}", None, {}
        case "revoke":
            return "DELETE", f"/admin/keys/{args.id}", None, {}
        case "rotate":
            return "POST", f"/admin/keys/{args.id}/rotate", {"grace_period_s": args.grace_period_s}, {}
        case "team-create":
            return "POST", "/admin/teams", fields, {}
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    master = os.environ.get("MODELROUTER_MASTER_KEY")
    if not master:
        print("set MODELROUTER_MASTER_KEY (the gateway's master key)", file=sys.stderr)
        return 2
    method, path, body, query = _request(args)
    base = os.environ.get("MODELROUTER_URL", "http://127.0.0.1:8000").rstrip("/")
    try:
        response = httpx.request(
            method, base + path, json=body, params=query, headers={"Authorization": f"Bearer {master}"}, timeout=30
        )
    except httpx.HTTPError as exc:
        print(f"could not reach the gateway at {base}: {exc}", file=sys.stderr)
        return 1
    answer = response.json()
    if response.status_code >= 400:
        print(json.dumps(answer, indent=2), file=sys.stderr)
        return 1
    secret = answer.pop("key", None) if isinstance(answer, dict) else None
    if secret:
        print(secret)
    print(json.dumps(answer, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
