"""`chatgw`: up (all-in-one dev), web, worker, cron, tokens, agents, chat, call."""

from __future__ import annotations

import argparse
import errno
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent_core.settings import Environment, Settings, SettingsError, load_settings
from agent_core.store import Store, agents, tokens
from agent_core.store.connection import sync_client
from agent_core.store.tokens import TokenRole
from workers.rqwire import RQJobFormat


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        print(f"chatgw: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def _redis_url(settings: Settings) -> str:
    from gateway.cli.redis_server import EmbeddedRedisError, resolve_redis_url

    try:
        return resolve_redis_url(settings)
    except EmbeddedRedisError as exc:
        print(f"chatgw: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def _store(url: str) -> Store:
    return Store(sync_client(url), RQJobFormat())


def _configure_logs(settings: Settings) -> None:
    from gateway.logs import configure

    configure(settings.app.log_level, settings.app.resolved_log_format.value)


def server_config(app: Any, host: str, port: int) -> Any:
    """How `chatgw web` serves: uvloop and httptools when installed, no access log (the
    benchmarks serve their baselines the same way)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        loop="auto",
        http="auto",
        timeout_graceful_shutdown=10,
    )


@dataclass(frozen=True)
class LocalWeb:
    """What a development web process records under the data dir: where it listens, the
    URL it checks Twilio signatures against (PUBLIC_BASE_URL), its pid."""

    url: str
    public_base_url: str
    pid: int


WEB_RECORD = "web.json"


def local_url(host: str, port: int) -> str:
    """The URL a client on this machine reaches `host:port` by."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def record_web(data_dir: Path, web: LocalWeb) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / f".{WEB_RECORD}.{web.pid}"
    tmp.write_text(json.dumps(asdict(web)))
    tmp.replace(data_dir / WEB_RECORD)


def forget_web(data_dir: Path, pid: int) -> None:
    """Remove the record if it is still this process's (a later web may have replaced it)."""
    current = running_web(data_dir)
    if current is not None and current.pid == pid:
        (data_dir / WEB_RECORD).unlink(missing_ok=True)


def running_web(data_dir: Path) -> LocalWeb | None:
    """The web process recorded under `data_dir`, if it is still running."""
    try:
        web = LocalWeb(**json.loads((data_dir / WEB_RECORD).read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None
    return web if _pid_alive(web.pid) else None


class PortInUseError(Exception):
    """The port to serve on is taken; the message says how to choose another."""


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port as uvicorn binds one; PortInUseError when the port is taken."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(f"port {port} on {host} is already in use") from exc
        raise
    sock.set_inheritable(True)
    return sock


def _free_port_after(host: str, port: int, tries: int = 50) -> int | None:
    for candidate in range(port + 1, min(port + 1 + tries, 65536)):
        try:
            bind(host, candidate).close()
        except PortInUseError:
            continue
        return candidate
    return None


def _port_flag(args: argparse.Namespace, settings: Settings) -> bool:
    """Whether --port chose the port; a --port that repeats PORT (the Procfile's
    `--port ${PORT:-8000}`) counts as PORT, the setting to change."""
    from_env = "port" in settings.app.model_fields_set and settings.app.port == args.port
    return args.port is not None and not from_env


def port_in_use(host: str, port: int, data_dir: Path, *, flag: bool, command: str) -> str:
    """Why `command` cannot serve on `port`, and how to choose another: with `--port` when
    that is how the port was chosen (it overrides PORT), else with PORT."""
    example = _free_port_after(host, port) or port + 1
    if flag:
        how = f"--port, e.g. chatgw {command} --port {example}"
    elif command == "up":
        how = f"PORT, e.g. PORT={example} make run (or chatgw up --port {example})"
    else:
        how = f"PORT, e.g. PORT={example} chatgw {command}"
    web = running_web(data_dir)
    if web is not None and web.url.endswith(f":{port}"):
        return (
            f"chatgw: port {port} on {host} is already in use by the gateway running from this directory "
            f"(pid {web.pid}): use it (chatgw chat finds it), stop it, or choose another port with {how}"
        )
    return f"chatgw: port {port} on {host} is already in use by another program; choose another port with {how}"


def cmd_web(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app

    settings = _settings()
    _configure_logs(settings)
    host = args.host or settings.app.host
    port = args.port or settings.app.port
    data_dir = Path(settings.app.data_dir)
    try:
        sock = bind(host, port)
    except PortInUseError:
        print(port_in_use(host, port, data_dir, flag=_port_flag(args, settings), command="web"), file=sys.stderr)
        return 2
    # Development only: lets `chatgw chat` find this process and sign for the URL it checks.
    record = settings.app.env is Environment.development
    try:
        url = _redis_url(settings)
        config = server_config(create_app(settings, url), host, port)
        if record:
            record_web(data_dir, LocalWeb(local_url(host, port), settings.app.public_base_url, os.getpid()))

            def forget_and_die(signum: int, frame: Any) -> None:
                forget_web(data_dir, os.getpid())
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)

            # After a graceful shutdown uvicorn raises the SIGTERM it stopped for again, which
            # would end the process before `finally`; the exit status stays the signal's.
            signal.signal(signal.SIGTERM, forget_and_die)
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn has already shut down gracefully; it re-raises Ctrl-C for the exit status.
        return 130
    finally:
        sock.close()
        if record:
            forget_web(data_dir, os.getpid())
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from workers import context
    from workers.worker import run

    settings = _settings()
    _configure_logs(settings)
    url = _redis_url(settings)
    ctx = context.WorkerContext(settings=settings, redis_url=url)
    context.use(ctx)
    gc.collect()
    gc.freeze()
    try:
        concurrency = args.concurrency or settings.app.worker_concurrency
        run(ctx.rq_redis, concurrency=concurrency, burst=args.burst, with_scheduler=not args.no_scheduler)
    finally:
        ctx.close()
    return 0


def cmd_cron(args: argparse.Namespace) -> int:
    from workers import context
    from workers.schedules import Scheduler

    settings = _settings()
    _configure_logs(settings)
    ctx = context.WorkerContext(settings=settings, redis_url=_redis_url(settings))
    context.use(ctx)
    scheduler = Scheduler().start()
    stop = {"now": False}

    def handle(signum: int, frame: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    while not stop["now"]:
        time.sleep(0.5)
    scheduler.stop()
    return 0


def cmd_tokens(args: argparse.Namespace) -> int:
    settings = _settings()
    store = _store(_redis_url(settings))
    if args.tokens_cmd == "create":
        token, record = store.run(tokens.create(args.name, TokenRole(args.role)))
        print(f"Created {record.role.value} token '{record.name}' ({record.id}). It is shown only once:")
        print(token)
        return 0
    if args.tokens_cmd == "list":
        for rec in store.run(tokens.list_all()):
            print(f"{rec.id}\t{rec.role.value}\t{rec.name}\t{rec.created_at}")
        return 0
    revoked = store.run(tokens.revoke(args.token))
    if not revoked:
        print(f"chatgw: no token with id or name '{args.token}'", file=sys.stderr)
        return 1
    for rec in revoked:
        print(f"revoked {rec.id} ({rec.role.value} '{rec.name}')")
    return 0


def cmd_agents(args: argparse.Namespace) -> int:
    from gateway.cli.agent_files import AgentFileError, apply_file

    settings = _settings()
    store = _store(_redis_url(settings))
    if args.agents_cmd == "list":
        for agent in store.run(agents.get_many(store.run(agents.all_ids()))):
            numbers = ",".join(agent.channels.numbers) or "-"
            print(f"{agent.id}\t{agent.status.value}\t{agent.name}\t{numbers}")
        return 0
    try:
        results = apply_file(store, Path(args.file))
    except AgentFileError as exc:
        print(f"chatgw: {exc}", file=sys.stderr)
        return 2
    for action, agent in results:
        print(f"{action}\t{agent.id}\t{agent.name}")
    return 0


def demo_tokens(store: Store, data_dir: Path) -> dict[str, str]:
    """Admin and operator tokens for the demo, kept in var/ so every `up` can show them."""
    path = data_dir / "demo-tokens.json"
    saved: dict[str, str] = {}
    if path.exists():
        saved = json.loads(path.read_text())
    out = {}
    for role, name in (("admin", "demo-admin"), ("operator", "demo-operator@example.com")):
        token = saved.get(role)
        if not token or store.run(tokens.lookup(token)) is None:
            token, _ = store.run(tokens.create(name, TokenRole(role)))
        out[role] = token
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    path.chmod(0o600)
    return out


def _wait_http(url: str, timeout_s: float, procs: list[subprocess.Popen[bytes]]) -> bool:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def cmd_up(args: argparse.Namespace) -> int:
    from gateway.cli.redis_server import EmbeddedRedisError, ensure_shared

    settings = _settings()
    data_dir = Path(settings.app.data_dir)
    port = args.port or settings.app.port
    # Checked before anything starts; the web process binds it for real (and says the same
    # if another program takes it in between).
    try:
        bind(args.host, port).close()
    except PortInUseError:
        print(port_in_use(args.host, port, data_dir, flag=_port_flag(args, settings), command="up"), file=sys.stderr)
        return 2
    owned = None
    if settings.redis.url:
        url = settings.redis.url
        redis_label = f"REDIS_URL ({url.split('@')[-1]})"
    else:
        try:
            url, owned = ensure_shared(data_dir / "redis")
        except EmbeddedRedisError as exc:
            print(f"chatgw: {exc}", file=sys.stderr)
            return 2
        redis_label = f"embedded, {url} (data in {data_dir / 'redis'}, appendonly)"
    store = _store(url)
    from gateway.cli.demo import demo_origins, ensure_demo

    env = {**os.environ, "REDIS_URL": url}
    env.setdefault("PUBLIC_BASE_URL", f"http://{args.host}:{port}")
    local = demo_origins(f"http://{args.host}:{port}")
    agent_id = ensure_demo(store, list(dict.fromkeys([*demo_origins(env["PUBLIC_BASE_URL"]), *local])))
    toks = demo_tokens(store, data_dir)
    base = [sys.executable, "-m", "gateway.cli"]
    # Children get sessions of their own so Ctrl-C reaches only this process, which then
    # stops each child exactly once (a second signal means "exit now" to a worker).
    procs = [
        subprocess.Popen([*base, "web", "--host", args.host, "--port", str(port)], env=env, start_new_session=True),
        subprocess.Popen(
            [*base, "worker", *(["--concurrency", str(args.concurrency)] if args.concurrency else [])],
            env=env,
            start_new_session=True,
        ),
    ]
    stopping = {"now": False}

    def handle(signum: int, frame: Any) -> None:
        stopping["now"] = True

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    base_url = f"http://{args.host}:{port}"
    try:
        if not _wait_http(base_url + "/healthz", 30, procs):
            print("chatgw: the web process did not start; see the log above", file=sys.stderr)
            return 1
        provider = settings.llm.provider
        llm = (
            "offline (no OPENAI_API_KEY set: deterministic demo responder)"
            if provider == "offline"
            else (f"openai ({settings.llm.openai_base_url or 'api.openai.com'}, model {settings.llm.llm_model})")
        )
        twilio = "configured" if settings.twilio.configured else "not configured: outbound goes to the dev outbox"
        print(
            "\nChat Agent Gateway is up\n"
            f"  Base URL:        {base_url}\n"
            f"  API docs:        {base_url}/openapi.json\n"
            f"  Demo agent:      {agent_id}\n"
            f"  Console:         {base_url}/console (sign in with the operator token)\n"
            f"  Web chat demo:   {base_url}/widget/demo\n"
            f"  Admin token:     {toks['admin']}\n"
            f"  Operator token:  {toks['operator']}\n"
            f"  Redis:           {redis_label}\n"
            f"  LLM:             {llm}\n"
            f"  Twilio:          {twilio}\n"
            "\nTry it:\n"
            f"  curl -s -X POST {base_url}/v1/chat/inbound -H 'API-Token: {toks['admin']}' \\\n"
            f"       -H 'Content-Type: application/json' \\\n"
            f'       -d \'{{"agent_uuid": "{agent_id}", "customer_id": "demo-1", "content": "Hi!"}}\'\n'
            f"  .venv/bin/chatgw chat --agent {agent_id} --from +15550001234   (text as a customer; ask for a call)\n"
            "\nCtrl-C stops everything.\n",
            flush=True,
        )
        while not stopping["now"]:
            if any(p.poll() is not None for p in procs):
                print("chatgw: a process exited; stopping the rest", file=sys.stderr)
                break
            time.sleep(0.3)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        if owned is not None:
            owned.stop()
            (data_dir / "redis" / "redis.url").unlink(missing_ok=True)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from gateway.cli.chat import run_chat

    settings = _settings()
    return run_chat(settings, _redis_url(settings), args)


def cmd_call(args: argparse.Namespace) -> int:
    from gateway.cli.call import run_call

    settings = _settings()
    return run_call(settings, _redis_url(settings), args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chatgw", description="Chat Agent Gateway")
    sub = p.add_subparsers(dest="cmd", required=True)

    up = sub.add_parser("up", help="embedded Redis + web + worker + demo agent, for a laptop or a demo")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=None, help="default: PORT, else 8000")
    up.add_argument("--concurrency", type=int, default=None, help="the worker's turns in flight")
    up.set_defaults(func=cmd_up)

    web = sub.add_parser("web", help="the HTTP process (uvicorn)")
    web.add_argument("--host", default=None, help="default: HOST, else 0.0.0.0")
    web.add_argument("--port", type=int, default=None, help="default: PORT, else 8000")
    web.set_defaults(func=cmd_web)

    worker = sub.add_parser("worker", help="the RQ worker process (all queues, with the scheduler)")
    worker.add_argument(
        "--concurrency", type=int, default=None, help="turns in flight (default: WORKER_CONCURRENCY, else from memory)"
    )
    worker.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    worker.add_argument("--no-scheduler", action="store_true", help="leave periodic sweeps to `chatgw cron`")
    worker.set_defaults(func=cmd_worker)

    cron = sub.add_parser("cron", help="periodic sweeps only (optional; workers run them too)")
    cron.set_defaults(func=cmd_cron)

    tok = sub.add_parser("tokens", help="API tokens")
    tsub = tok.add_subparsers(dest="tokens_cmd", required=True)
    tc = tsub.add_parser("create")
    tc.add_argument("--name", required=True, help="operator identity, e.g. alice@example.com")
    tc.add_argument("--role", required=True, choices=[r.value for r in TokenRole])
    tsub.add_parser("list")
    tr = tsub.add_parser("revoke")
    tr.add_argument("token", help="token id or name")
    tok.set_defaults(func=cmd_tokens)

    ag = sub.add_parser("agents", help="agents as code")
    asub = ag.add_subparsers(dest="agents_cmd", required=True)
    aa = asub.add_parser("apply")
    aa.add_argument("file")
    asub.add_parser("list")
    ag.set_defaults(func=cmd_agents)

    chat = sub.add_parser("chat", help="play a customer texting an agent through the signed Twilio webhook")
    chat.add_argument("--agent", required=True, help="agent id")
    chat.add_argument("--from", dest="from_", required=True, help="the customer's number, e.g. +15550001234")
    chat.add_argument("--whatsapp", action="store_true", help="text over WhatsApp instead of SMS")
    chat.add_argument(
        "--url",
        default=None,
        help="the gateway's base URL (default: the one `chatgw up`/`chatgw web` started from this directory runs, "
        "else PUBLIC_BASE_URL)",
    )
    chat.set_defaults(func=cmd_chat)

    call = sub.add_parser("call", help="play the callee of an escalation call through the signed voice webhooks")
    call.add_argument("call_id", help="the call's id (call_…), as `chatgw chat` prints it")
    call.add_argument("--url", default=None, help="the gateway's base URL (found as for `chatgw chat`)")
    call.set_defaults(func=cmd_call)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
