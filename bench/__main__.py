"""`python -m bench [ingest|turns|webhook|voice|widget|all|console] [--duration S] [--turns N]
[--engine auto|wrk|python]`

Runs the benchmarks, prints a compact table and writes the full results as JSON to
bench/results/ (git-ignored). Figures are only comparable within one run: read the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.stack import ROOT

RESULTS = Path(__file__).resolve().parent / "results"
GATEWAY_ROW = ("gateway", "gateway")
PAUSED_ROW = ("gateway, worker paused", "gateway_worker_paused")


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:  # read-only git queries: which code was measured
        git = ["git", "-C", str(ROOT)]
        info["commit"] = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=True
        ).stdout
        info["uncommitted_changes"] = bool(status.strip())
    except (OSError, subprocess.CalledProcessError):
        pass
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            info["cpu_model"] = line.split(":", 1)[1].strip()
            break
    return info


def _f(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def ingest_table(r: dict[str, Any]) -> list[str]:
    cs = _concurrencies(r)
    out = [
        f"Ingest: POST /v1/chat/inbound?wait=0 ({r['engine']}, {r['duration_s']:g} s/run, "
        f"{r['customers']} customers, worker --concurrency {r['worker_concurrency']} running)",
    ]
    out += _closed_loop_section(
        r,
        (("bare JSON (baseline)", "bare_json"), GATEWAY_ROW, PAUSED_ROW, ("bare TwiML", "bare_twiml")),
        ("gateway / bare JSON", "bare_json", "server_cpu_per_req_gateway_vs_bare_json"),
    )
    runs = {**r["runs"], **{f"warmup:{k}": v for k, v in r["warmup"].items()}}
    non2xx = {
        k: {"non_2xx": v["non_2xx"], "statuses": v["statuses"], "errors": v["errors"]}
        for k, v in runs.items()
        if v["non_2xx"] or v["errors"]
    }
    out.append(
        f"  {'client CPU s (load gen)':<22}"
        + "".join(
            f"{'gw ' + format(r['runs'][f'gateway@c{c}'].get('client_cpu_s', 0), '.1f'):>22}"
            f"{' bare ' + format(r['runs'][f'bare_json@c{c}'].get('client_cpu_s', 0), '.1f'):>12}"
            for c in cs
        )
    )
    out += _open_loop_rows(r)
    out += [
        f"  backlog at end {r['backlog_at_end_of_load']}, drained in {r['drain_s']} s; census {r['census']}",
        f"  non-2xx/errors: {non2xx or 'none'}",
    ]
    return out


def turns_table(r: dict[str, Any]) -> list[str]:
    fl = r["rq_floor"]
    out = [
        f"Turns: {r['turns']} queued turns drained, offline responder (LLM time ~0)",
        f"  RQ floor (no-op, SimpleWorker): {fl['ms_per_job']:.2f} ms/job ({fl['cpu_ms_per_job']:.2f} ms CPU), "
        f"{fl['redis_cmds_per_job']:.0f} Redis cmds/job; RQ enqueue {fl['enqueue_us_per_job']:.0f} µs/job",
        f"  {'procs x concurrency':<20}{'turns/s':>9}{'ms/turn':>9}{'x floor':>9}{'CPU ms':>8}{'x floor':>9}{'cmds':>6}"
        f"{'scaling':>9}{'answered':>10}{'RSS after':>11}",
    ]
    for key, c in r["configs"].items():
        procs, conc = key.split("x")
        out.append(
            f"  {procs + ' x ' + conc:<20}{c['turns_per_s']:>9.1f}{c['ms_per_turn']:>9.2f}{c['vs_rq_floor']:>8.2f}x"
            f"{c['worker_cpu_ms_per_turn']:>8.2f}{c.get('cpu_vs_rq_floor', float('nan')):>8.2f}x"
            f"{c['redis_cmds_per_turn']:>6.0f}{r['scaling_vs_1x1'][key]:>8.2f}x"
            f"{c['census']['answered']:>6}/{c['turns']:<4}{'/'.join(str(x) for x in c['rss_after_mib']):>10}M"
        )
    idle = ", ".join(f"{k}: {v:.1f} MiB = {v * 1.048576:.1f} MB" for k, v in r["idle_rss_mib"].items())
    out.append(f"  idle worker RSS (VmRSS after start-up, nothing queued): {idle}")
    return out


def webhook_table(ing: dict[str, Any], lat: dict[str, Any]) -> list[str]:
    out = [
        f"Webhook ingest: signed POST /twilio/messages ({ing['engine']}, {ing['duration_s']:g} s/run, "
        f"{ing['customers']} From numbers, worker --concurrency {ing['worker_concurrency']} running, "
        f"replies to a fake Twilio)",
    ]
    out += _closed_loop_section(
        ing,
        (("bare TwiML (baseline)", "bare_twiml"), ("gateway webhook", "gateway"), PAUSED_ROW),
        ("gateway / bare TwiML", "bare_twiml", "server_cpu_per_req_gateway_vs_bare"),
    )
    out += _open_loop_rows(ing)
    runs = {**ing["runs"], **ing["fixed_rate"], **{f"warmup:{k}": v for k, v in ing["warmup"].items()}}
    non2xx = {
        k: {"statuses": v["statuses"], "errors": v["errors"]} for k, v in runs.items() if v["non_2xx"] or v["errors"]
    }
    out += [
        f"  backlog at end {ing['backlog_at_end_of_load']}, drained in {ing['drain_s']} s; census {ing['census']}",
        f"  reply delivery statuses {ing['reply_delivery_statuses']}; signed requests used "
        f"{ing['lines_used']:,} of {ing['lines']:,} (wrapped: {ing['lines_wrapped']})",
        f"  non-2xx/errors: {non2xx or 'none'}",
        f"Webhook -> Twilio create latency (offline responder = zero-latency LLM; each request a new customer; "
        f"{lat['duration_s']:g} s at 70% of the worker's maximum, then {lat['low_rate']:g}/s)",
        f"  {'worker':<10}{'max turns/s':>12}{'rate':>8}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}"
        f"{'webhook p99':>13}{'n':>6}{'missing':>9}{'non-2xx':>9}",
    ]
    for key, c in lat["configs"].items():
        procs, conc = key.split("x")
        mx = c["maximum"]
        for x in (c["at_70pct"], c["low_rate"]):
            e = x["webhook_to_twilio"]
            out.append(
                f"  {procs + ' x ' + conc:<10}{mx['turns_per_s']:>12.1f}{x['target_rate']:>7.0f}/s"
                f"{e['p50_ms']:>8.2f}{e['p90_ms']:>8.2f}{e['p99_ms']:>8.2f}{e['max_ms']:>8.1f}"
                f"{x['webhook_response']['p99_ms']:>13.2f}{e['n']:>6}{x['replies_missing']:>9}{x['non_2xx']:>9}"
            )
    out.append("  (latencies in ms: webhook written by the load generator -> create received by the fake Twilio)")
    return out


def widget_table(r: dict[str, Any]) -> list[str]:
    def row(label: str, x: dict[str, Any] | str) -> str:
        if isinstance(x, str):
            return f"  {label:<44}{x}"
        return f"  {label:<44}p50 {x['p50_ms']:.2f} ms  p95 {x['p95_ms']:.2f}  p99 {x['p99_ms']:.2f}  (n={x['n']})"

    idle = r["idle_streams"]
    return [
        "Widget: visitor message -> AI reply (offline responder = zero-latency LLM), idle streams, widget.js",
        row("reply on the widget's SSE stream", r["reply_latency"]),
        row("reply rendered in the widget (chromium)", r["browser_reply_latency"]),
        f"  idle widget streams on one web process: {idle['streams']} open (gauge {idle['sse_streams_open_gauge']:.0f},"
        f" closed {idle['closed_by_server']}), +{idle['extra_mib']} MiB = {idle['kib_per_stream']} KiB/stream"
        f" (RSS {idle['web_rss_before_mib']} -> {idle['web_rss_after_mib']} MiB), opened in {idle['opened_in_s']} s",
        f"  widget.js: {r['script']['bytes']:,} bytes ({r['script']['gzip_bytes']:,} gzipped)",
    ]


def _concurrencies(r: dict[str, Any]) -> list[int]:
    return sorted({int(k.split("@c")[1]) for k in r["runs"]})


def _closed_loop_section(r: dict[str, Any], rows: tuple[tuple[str, str], ...], bare: tuple[str, str, str]) -> list[str]:
    """The closed-loop table: a header, one row per (label, run name) with requests/s, p50 and p99
    at each concurrency, then against the `bare` run (label, run name, key of the CPU ratio):
    requests/s ratios with the worker running and paused, and server CPU per request."""
    label, name, cpu_key = bare
    cs = _concurrencies(r)
    out = [f"  {'':<22}" + "".join(f"{'c=' + str(c):>34}" for c in cs)]
    for row_label, run_name in rows:
        cells = []
        for c in cs:
            run = r["runs"][f"{run_name}@c{c}"]
            cells.append(f"{_f(run['rps']):>9} req/s p50 {run['p50_ms']:6.2f} p99 {run['p99_ms']:6.2f}")
        out.append(f"  {row_label:<22}" + "".join(f"{cell:>34}" for cell in cells))
    for ratio_label, key in (
        (label, f"gateway_vs_{name}_rps"),
        ("  (worker paused)", f"gateway_worker_paused_vs_{name}_rps"),
    ):
        out.append(f"  {ratio_label:<22}" + "".join(f"{r['ratios'][f'c{c}'][key]:>33.3f}x" for c in cs))
    out.append(
        f"  {'server CPU µs/request':<22}"
        + "".join(
            f"{'gw ' + _f(r['runs'][f'gateway@c{c}']['server_cpu_us_per_req']):>16}"
            f"{' bare ' + _f(r['runs'][f'{name}@c{c}']['server_cpu_us_per_req']):>12}"
            f"{r['ratios'][f'c{c}'][cpu_key]:>5.1f}x"
            for c in cs
        )
    )
    return out


def _open_loop_rows(r: dict[str, Any]) -> list[str]:
    return [
        f"  open loop, {label.replace('_', ' ')}: {_f(fx['target_rate'])}/s = 70% of {_f(fx['of_max_rps'])}"
        f" -> got {_f(fx['rps'])}/s, p50 {fx['p50_ms']:.2f} ms, p90 {fx['p90_ms']:.2f}, p99 {fx['p99_ms']:.2f},"
        f" max {fx['max_ms']:.1f}; p99 from write {fx['service_p99_ms']:.2f} ms"
        for label, fx in r["fixed_rate"].items()
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description="Chat Agent Gateway benchmarks")
    # `console` (bench/console.py, ~4 min) is not part of `all`.
    choices = ("ingest", "turns", "webhook", "voice", "widget", "all", "console")
    p.add_argument("which", nargs="?", choices=choices, default="all")
    p.add_argument("--duration", type=float, default=8.0, help="seconds per ingest load run (default 8)")
    p.add_argument("--turns", type=int, default=2_000, help="turns queued per turn configuration (default 2000)")
    p.add_argument("--engine", choices=("auto", "wrk", "python"), default="auto", help="load generator")
    args = p.parse_args(argv)

    started = time.monotonic()
    results: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine()}
    print(f"machine: {results['machine']}", flush=True)
    tables: list[str] = []
    if args.which in ("ingest", "all"):
        from bench import ingest

        results["ingest"] = ingest.run(args.duration, engine=args.engine, log=lambda s: print(s, flush=True))
        tables += ingest_table(results["ingest"])
    if args.which in ("turns", "all"):
        from bench import turns

        results["turns"] = turns.run(args.turns, log=lambda s: print(s, flush=True))
        tables += turns_table(results["turns"])
    if args.which in ("webhook", "all"):
        from bench import webhook

        say = lambda s: print(s, flush=True)  # noqa: E731
        results["webhook_ingest"] = webhook.run_ingest(args.duration, engine=args.engine, log=say)
        results["webhook_latency"] = webhook.run_latency(log=say)
        tables += webhook_table(results["webhook_ingest"], results["webhook_latency"])
    if args.which in ("voice", "all"):
        from bench import voice

        results["voice"] = voice.run(log=lambda s: print(s, flush=True))
        tables += voice.table(results["voice"])
    if args.which == "console":
        from bench import console

        results["console"] = console.run(log=lambda s: print(s, flush=True))
        tables += console.table(results["console"])
    if args.which in ("widget", "all"):
        from bench import widget

        results["widget"] = widget.run(log=lambda s: print(s, flush=True))
        tables += widget_table(results["widget"])
    results["wall_s"] = round(time.monotonic() - started, 1)

    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{args.which}.json"
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    findings = {
        part: results[part]["log_findings"]
        for part in ("ingest", "turns", "webhook_ingest", "webhook_latency", "voice", "widget", "console")
        if results.get(part, {}).get("log_findings")
    }
    print("\n" + "\n".join(tables))
    if findings:
        print("\nwarnings/errors in process logs:")
        for part, procs in findings.items():
            for proc, lines in procs.items():
                for line in lines:
                    print(f"  [{part}/{proc}] {line}")
    print(f"\n{results['wall_s']} s in all; full results in {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
