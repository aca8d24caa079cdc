"""A local fake of Twilio's Messages API for the webhook benchmark, run as its own process
(so it never shares a GIL with the load generator or the benchmark driver).

    python -m bench.faketwilio --port P --account-sid AC...

Routes:
- `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` → 201 with a Message resource
  echoing the request (the shape Twilio returns; the twilio SDK parses it). Each create is
  recorded with `time.time()` taken when the handler starts (all processes run on one
  machine, so it is comparable with the load generator's clock), its `To` and `From`.
- `GET /_created?since=K` → `{"count": N, "items": [[t, to, from], ...]}` from index K.
- `GET /healthz` → 200.

Served like the gateway and the baselines: uvicorn, loop/http `auto`, no access log.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
import urllib.parse
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def message_resource(account_sid: str, form: dict[str, str]) -> dict[str, Any]:
    sid = "SM" + secrets.token_hex(16)
    return {
        "account_sid": account_sid,
        "api_version": "2010-04-01",
        "body": form.get("Body", ""),
        "date_created": "Thu, 27 Nov 2025 16:06:00 +0000",
        "date_sent": None,
        "date_updated": "Thu, 27 Nov 2025 16:06:00 +0000",
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": form.get("From"),
        "messaging_service_sid": form.get("MessagingServiceSid"),
        "num_media": "0",
        "num_segments": "1",
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued",
        "subresource_uris": {"media": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}/Media.json"},
        "to": form.get("To"),
        "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
    }


def create_app(account_sid: str) -> Starlette:
    created: list[tuple[float, str, str]] = []

    async def create(request: Request) -> Response:
        arrived = time.time()
        form = dict(urllib.parse.parse_qsl((await request.body()).decode()))
        if not request.headers.get("authorization", "").startswith("Basic "):
            return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, status_code=401)
        created.append((arrived, form.get("To", ""), form.get("From", "")))
        return JSONResponse(message_resource(account_sid, form), status_code=201)

    async def listing(request: Request) -> Response:
        since = int(request.query_params.get("since", "0"))
        return JSONResponse({"count": len(created), "items": created[since:]})

    async def healthz(request: Request) -> Response:
        return Response("ok")

    return Starlette(
        routes=[
            Route(f"/2010-04-01/Accounts/{account_sid}/Messages.json", create, methods=["POST"]),
            Route("/_created", listing),
            Route("/healthz", healthz),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from gateway.cli import server_config

    p = argparse.ArgumentParser(prog="python -m bench.faketwilio")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--account-sid", required=True)
    args = p.parse_args(argv)
    uvicorn.Server(server_config(create_app(args.account_sid), args.host, args.port)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
