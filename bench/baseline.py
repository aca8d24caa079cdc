"""The bare baseline: a Starlette app with one POST route that reads the body and returns a
constant, served by uvicorn exactly as `chatgw web` serves the gateway (one process,
loop="auto" and http="auto" — uvloop and httptools when installed — no access log).

    python -m bench.baseline --port P [--host 127.0.0.1]

Routes (both POST, both read the whole request body first):
- `/json`  → 200 `{"success":true,"data":{}}` (application/json): the Chat API comparison.
- `/twiml` → 200 `<?xml version="1.0" encoding="UTF-8"?><Response/>` (text/xml): the
  Twilio webhook comparison (SPEC §13's "bare Starlette endpoint returning constant TwiML").
"""

from __future__ import annotations

import argparse
import sys

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

JSON_BODY = b'{"success":true,"data":{}}'
TWIML_BODY = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'


async def json_endpoint(request: Request) -> Response:
    await request.body()
    return Response(JSON_BODY, media_type="application/json")


async def twiml_endpoint(request: Request) -> Response:
    await request.body()
    return Response(TWIML_BODY, media_type="text/xml")


def create_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/json", json_endpoint, methods=["POST"]),
            Route("/twiml", twiml_endpoint, methods=["POST"]),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from gateway.cli import server_config

    p = argparse.ArgumentParser(prog="python -m bench.baseline")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    uvicorn.Server(server_config(create_app(), args.host, args.port)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
