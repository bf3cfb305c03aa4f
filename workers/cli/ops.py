"""`newsflow status` and `newsflow trace`: where the articles are, and why one did not arrive."""

from __future__ import annotations

import time
from typing import Any

import click

from config.defaults import Settings
from config.settings import redact_url
from workers.cli.common import Duration, emit_json, fail, settings_or_exit, unreachable

THROUGHPUT_WINDOW_MIN = 5


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def control_app(settings: Settings) -> Any:
    """A Celery app for remote control and publishing only: no task modules (and their parsers) imported."""
    from celery import Celery

    from tasks.celeryconfig import celery_config

    app = Celery("newsflow-ops")
    app.conf.update(celery_config(settings))
    return app


def workers_by_queue(settings: Settings, timeout_s: float = 1.0) -> dict[str, list[str]]:
    """Worker node names consuming each queue, from the workers' own answers (remote control)."""
    app = control_app(settings)
    replies: dict[str, list[dict[str, Any]]] = app.control.inspect(timeout=timeout_s).active_queues() or {}
    out: dict[str, list[str]] = {}
    for node, queues in sorted(replies.items()):
        for q in queues or []:
            out.setdefault(str(q.get("name")), []).append(node)
    return out


def queue_names() -> list[str]:
    """Every queue a task is routed to: the stages in pipeline order, then the others (e.g. crawl)."""
    from newsflow.pipeline import STAGES, task_routes

    names = [s.queue for s in STAGES]
    routed = [str(r["queue"]) for r in task_routes().values()]
    return names + sorted({q for q in routed if q not in names})


def collect_status(settings: Settings, inspect_timeout_s: float = 1.0) -> dict[str, Any]:
    from newsflow import queues
    from newsflow.pipeline import ORDER
    from newsflow.state import connect
    from newsflow.stores import Stores
    from tasks.transport import quarantine_key

    stores = Stores.from_settings(settings)
    state = stores.state
    broker = connect(settings.redis_url, settings)
    now = time.time()
    names = queue_names()
    workers = workers_by_queue(settings, inspect_timeout_s)
    qinfo = []
    for q in queues.inspect_queues(broker, names, now):
        row = q.to_dict()
        row["workers"] = workers.get(q.queue, [])
        row["stale"] = q.oldest_age_s is not None and q.oldest_age_s > settings.status_stale_queue_s
        qinfo.append(row)
    recent = state.transitions(THROUGHPUT_WINDOW_MIN, now)
    dead = state.dead_letter_counts()
    return {
        "time": round(now, 3),
        "broker": redact_url(settings.redis_url),
        "queues": qinfo,
        "articles": {"last_hour": state.transitions(60, now), "last_day": state.transitions_hours(24, now)},
        "throughput_per_min": {
            "window_min": THROUGHPUT_WINDOW_MIN,
            **{s: round(n / THROUGHPUT_WINDOW_MIN, 2) for s, n in recent.items()},
        },
        "stage_runs": stores.stage_counts(ORDER),
        # Mean wall and CPU time per task: a stage's CPU per task times its rate is the cores it needs.
        "stage_costs": stores.stage_costs(ORDER),
        "dead_letters": {"total": sum(d["count"] for d in dead), "by_stage_reason": dead},
        # Queue entries that were not messages, set aside by the workers (tasks/transport.py).
        "quarantined": int(broker.llen(quarantine_key(settings.key_prefix))),
        "sources": state.source_counts(),
        # Hosts that answered 429/503 with Retry-After: nobody fetches from them until it runs out.
        "host_holds": [h.to_dict() for h in stores.limiter.holds()],
        "article_ids": _id_versions(settings, stores),
        "durability": _durability(settings, broker),
    }


def _durability(settings: Settings, broker: Any) -> list[dict[str, str]]:
    """Warnings per Redis (broker, and the state's if it is another) that could lose articles."""
    from newsflow import queues
    from newsflow.state import connect

    servers = [("broker", settings.redis_url, broker)]
    if settings.state_url != settings.redis_url:
        servers.append(("state", settings.state_url, connect(settings.state_url, settings)))
    out = []
    for role, url, client in servers:
        for warning in queues.durability_warnings(client):
            out.append({"redis": role, "url": redact_url(url), "warning": warning})
    return out


def _id_versions(settings: Settings, stores: Any) -> dict[str, Any]:
    """The article id version stored articles were made by, against this code's (`newsflow migrate`)."""
    from newsflow.migrate import stored_id_version
    from newsflow.urls import ID_VERSION

    stored = stored_id_version(settings, stores)
    return {"stored_version": stored, "code_version": ID_VERSION, "migrate_needed": stored not in (None, ID_VERSION)}


def _per_task(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:.1f}"


def print_status(st: dict[str, Any]) -> None:
    echo = click.echo
    echo(f"newsflow status  {_iso(st['time'])[:19]} UTC  broker {st['broker']}\n")
    for d in st.get("durability") or []:
        echo(f"WARNING: the {d['redis']} Redis ({d['url']}): {d['warning']}\n")
    ids = st.get("article_ids") or {}
    if ids.get("migrate_needed"):
        echo(
            f"WARNING: stored article ids are version {ids['stored_version']}, this newsflow makes version "
            f"{ids['code_version']}: workers refuse to start until you run `newsflow migrate`\n"
        )
    echo(f"{'QUEUE':10} {'DEPTH':>7} {'OLDEST':>8} {'UNACKED':>8} {'RETRYING':>9}  WORKERS")
    for q in st["queues"]:
        flag = "  STALE" if q["stale"] else ""
        names = ", ".join(q["workers"]) if q["workers"] else "NONE ONLINE"
        # A waiting message without `enqueued_at` (not sent by newsflow's client or stages) has no known age.
        oldest = "unknown" if q["depth"] and q["oldest_age_s"] is None else _age(q["oldest_age_s"])
        echo(
            f"{q['queue']:10} {q['depth']:>7} {oldest:>8} {q['unacked']:>8} {q['scheduled']:>9}"
            f"  {len(q['workers'])} {names}{flag}"
        )
    hour, day = st["articles"]["last_hour"], st["articles"]["last_day"]
    tp = st["throughput_per_min"]
    echo(f"\n{'ARTICLES':12} {'last hour':>10} {'last day':>10} {'per min (' + str(tp['window_min']) + 'm)':>14}")
    for state in hour:
        echo(f"{state:12} {hour[state]:>10} {day[state]:>10} {tp[state]:>14}")
    echo(
        f"\n{'STAGE RUNS':10} {'ok':>8} {'skipped':>8} {'retry':>8} {'dead':>8} {'ms/task':>9} {'CPU ms/task':>12}"
        "   (since counters began)"
    )
    costs = st.get("stage_costs") or {}
    for stage, counts in st["stage_runs"].items():
        cost = costs.get(stage) or {}
        echo(
            f"{stage:10} {counts['ok']:>8} {counts['skipped']:>8} {counts['retry']:>8} {counts['dead']:>8}"
            f" {_per_task(cost.get('ms_per_task')):>9} {_per_task(cost.get('cpu_ms_per_task')):>12}"
        )
    dl = st["dead_letters"]
    echo(f"\nDEAD LETTERS on file: {dl['total']}" + ("  (newsflow deadletters list / replay)" if dl["total"] else ""))
    for d in dl["by_stage_reason"]:
        echo(f"  {d['stage']:8} {d['reason']:28} {d['count']:>7}")
    holds = st.get("host_holds") or []
    if holds:
        echo(f"\nHOSTS ON HOLD: {len(holds)} (they asked us to wait: Retry-After; their fetches wait, not fail)")
        for h in holds[:20]:
            echo(f"  {h['host'][:40]:40} {_age(h['remaining_s']):>8} left  {h['reason']}")
        if len(holds) > 20:
            echo(f"  ... and {len(holds) - 20} more (newsflow status --json lists them all)")
    if st.get("quarantined"):
        echo(f"\nQUARANTINED queue entries that were not messages: {st['quarantined']} (see docs/reliability.md)")
    if st["sources"]:
        echo(f"\n{'SOURCE':30} {'discovered':>10} {'indexed':>8} {'skipped':>8} {'dead':>6}")
        for name, c in st["sources"].items():
            echo(f"{name[:30]:30} {c['discovered']:>10} {c['indexed']:>8} {c['skipped']:>8} {c['dead']:>6}")


def drift_report(settings: Settings, as_json: bool) -> int:
    """Print the drift watch's findings; returns how many sources are flagged."""
    from newsflow.stores import Stores

    reports = Stores.from_settings(settings).drift.reports()
    flagged = [r for r in reports if r.flagged]
    judged = sum(r.judged for r in reports)
    if as_json:
        emit_json({"watched": len(reports), "judged": judged, "flagged": [r.to_dict() for r in flagged]})
        return len(flagged)
    echo = click.echo
    echo(
        f"drift watch: {len(reports)} sources/sites watched, {judged} with enough articles to judge, "
        f"{len(flagged)} flagged"
    )
    for r in flagged:
        b = r.baseline
        echo(f"\n{r.key}  (window {r.window.n} articles, baseline {b.n if b else 0})")
        for m in r.moved:
            unit = "" if m.metric == "median_body" else " share"
            z = f"  z={m.z}" if m.z is not None else ""
            echo(f"  {m.metric + unit:24} now {m.window:>8}  was {m.baseline:>8}{z}")
    return len(flagged)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (one per refresh with --watch).")
@click.option("--watch", is_flag=True, help="Refresh until Ctrl-C.")
@click.option(
    "--interval", type=Duration("seconds", least=0.5), default=2.0, show_default=True, help="Refresh period, seconds."
)
@click.option("--drift", is_flag=True, help="Only the drift watch: sources whose extraction changed (exit 1 if any).")
def status(as_json: bool, watch: bool, interval: float, drift: bool) -> None:
    """Queues (depth, oldest message, unacked, workers online), article states, dead letters, sources.

    \b
    OLDEST    how long the oldest waiting message of the queue has waited
    UNACKED   delivered to a worker and not yet acknowledged (running, prefetched or retrying)
    RETRYING  of those, held for a retry countdown
    Article counts come from the ledger's per-minute (last hour) and per-hour (last day) counters.

    \b
    --drift compares each source's newest articles with its own baseline (docs/operations.md):
    shares with no article, no date, no author or a fallback body, and the median body length.
    """
    import redis

    settings = settings_or_exit()
    if drift:
        try:
            flagged = drift_report(settings, as_json)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            unreachable(exc)
            return
        raise SystemExit(1 if flagged else 0)
    try:
        while True:
            try:
                st = collect_status(settings)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                unreachable(exc)
                return
            if as_json:
                emit_json(st)
            else:
                if watch:
                    click.clear()
                print_status(st)
            if not watch:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        return


def resolve_article(value: str) -> tuple[str, str | None]:
    """(article id, the URL given or None) for an id or a URL."""
    from newsflow.urls import InvalidURL, article_id, given_article_id

    given = given_article_id(value)
    if given is not None:
        return given, None
    try:
        return article_id(value), value
    except InvalidURL as exc:
        shown = value if len(value) <= 200 else value[:200] + f"... ({len(value)} characters)"
        fail(f"{shown!r} is neither an article id (32 hex characters) nor a valid URL: {str(exc)[:300]}", 2)
        raise  # unreachable: fail() exits


def collect_trace(settings: Settings, aid: str) -> dict[str, Any]:
    from newsflow import queues
    from newsflow.pipeline import stage_after
    from newsflow.state import State, connect

    state = State.from_settings(settings)
    entry = state.ledger(aid)
    out: dict[str, Any] = {
        "article_id": aid,
        "ledger": entry.to_dict() if entry else None,
        "events": state.trace(aid),
        "retries": state.retries(aid),
        "dead_letter": None,
        "waiting_in": None,
    }
    if entry is None:
        return out
    if entry.state == "dead":
        record = state.dead_letter_record(aid)
        if record:
            out["dead_letter"] = {k: record.get(k) for k in ("stage", "reason", "detail", "time")}
    elif (waits_for := stage_after(entry.state)) is not None:
        q = waits_for.queue
        info = queues.inspect_queues(connect(settings.redis_url, settings), [q])[0]
        out["waiting_in"] = {**info.to_dict(), "since_s": round(time.time() - entry.updated_at, 3)}
    return out


def print_trace(tr: dict[str, Any], given_url: str | None) -> None:
    echo = click.echo
    led = tr["ledger"]
    if led is None:
        echo(f"article {tr['article_id']}" + (f" ({given_url})" if given_url else ""))
        echo("never seen: no ledger entry (never submitted or crawled, or older than the ledger's TTL)")
        return
    echo(f"article {tr['article_id']}  {led['url']}")
    why = f" ({led['reason']})" if led["reason"] else ""
    echo(f"now: {led['state']} at {led['stage']}{why}, {_age(time.time() - led['updated_at'])} ago{_retrying(tr)}\n")
    echo(f"{'TIME (UTC)':23}  {'STATE':10} {'STAGE':8} {'WORKER':28} REASON / DETAIL")
    # Retries are no transitions; they are shown among them, by time, as "retry".
    retries = [{**r, "state": "retry", "detail": _retry_detail(r)} for r in tr.get("retries") or []]
    for ev in sorted([*tr["events"], *retries], key=lambda e: float(e["t"])):
        note = " ".join(x for x in (ev.get("reason") or "", ev.get("detail") or "") if x)
        echo(f"{_iso(ev['t']):23}  {ev['state']:10} {ev['stage']:8} {(ev.get('worker') or '-')[:28]:28} {note}")
    if tr["dead_letter"]:
        d = tr["dead_letter"]
        echo(f"\ndead letter: stage {d['stage']}, reason {d['reason']}: {d['detail']}")
        echo(f"replay it:   newsflow deadletters replay --id {tr['article_id']}")
    elif tr["waiting_in"]:
        w = tr["waiting_in"]
        workers = "" if w["unacked"] else " and no message of it is being worked on"
        echo(
            f"\nin flight: {_age(w['since_s'])} since its last step; queue {w['queue']} holds {w['depth']} "
            f"(oldest {_age(w['oldest_age_s'])}), {w['unacked']} unacked ({w['scheduled']} waiting to retry){workers}"
        )
        echo("if that queue has no worker online, `newsflow status` shows it (WORKERS: NONE ONLINE)")


def _retrying(tr: dict[str, Any]) -> str:
    """The summary's note when the article's last step was a retry, not a transition: the ledger
    still shows the state it had before, which alone reads as if it were stuck there."""
    from newsflow.pipeline import TERMINAL_STATES

    led, retries = tr["ledger"], tr.get("retries") or []
    if not retries or led["state"] in TERMINAL_STATES:
        return ""
    last = max(retries, key=lambda r: float(r["t"]))
    if float(last["t"]) < float(led["updated_at"]):
        return ""
    return f"; retrying at {last['stage']} ({last.get('reason') or 'transient'}, {_retry_detail(last)})"


def _retry_detail(r: dict[str, Any]) -> str:
    return f"attempt {r.get('attempt')}, again in {r.get('countdown_s')} s: {r.get('detail') or ''}".rstrip(": ")


@click.command()
@click.argument("url_or_id")
@click.option(
    "--json", "as_json", is_flag=True, help="Print {article_id, ledger, events, retries, dead_letter, waiting_in}."
)
def trace(url_or_id: str, as_json: bool) -> None:
    """The path of one article through the stages: when, which state, which worker, and why.

    Accepts the article id or any spelling of its requested URL. Exit status 1 if never seen.
    """
    import redis

    settings = settings_or_exit()
    aid, given_url = resolve_article(url_or_id)
    try:
        tr = collect_trace(settings, aid)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        unreachable(exc)
        return
    if as_json:
        emit_json(tr)
    else:
        print_trace(tr, given_url)
    raise SystemExit(0 if tr["ledger"] else 1)


COMMANDS = [status, trace]
