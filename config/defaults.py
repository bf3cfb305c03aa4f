"""Every newsflow setting, its default and why it has that value.

This is the one place defaults live. `config.settings` is the one module that reads the
environment: each field below can be overridden by `NEWSFLOW_<FIELD NAME IN UPPER CASE>`
(for example `NEWSFLOW_FETCH_TIMEOUT_S=5`). Units are part of the names.

This module imports nothing from `workers` or `tasks`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    # --- where things live -------------------------------------------------------------------
    # Broker: the four stage queues and their unacked messages.
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Shared state (claim-check blobs, ledger, dead letters, ...). Empty means "same as redis_url";
    # point it at another Redis so page bodies never crowd the queues.
    state_redis_url: str = ""
    # Either URL may name Redis Sentinels instead of a server, in Celery's form
    # `sentinel://[:password@]host:port;sentinel://host2:port2` (the password, if any, is the
    # master's); clients then follow the master the sentinels elect (docs/scaling.md).
    # The master group the sentinels watch ...
    redis_sentinel_master: str = "mymaster"
    # ... and the sentinels' own password (`requirepass` of the sentinel processes); empty: none.
    redis_sentinel_password: str = ""
    # Index, private Redis, pid files. Relative paths are taken from the working directory.
    data_dir: str = "./var"
    # Prefix of every Redis key newsflow writes in the state Redis.
    key_prefix: str = "newsflow:"

    # --- fetch ---------------------------------------------------------------------------------
    # Sent with every request; sites block anonymous clients, so say who we are.
    user_agent: str = "newsflow/0.1 (+https://github.com/newsflow/newsflow)"
    # Time to open a TCP connection.
    fetch_connect_timeout_s: float = 5.0
    # Time between two bytes of the response.
    fetch_read_timeout_s: float = 15.0
    # Hard deadline for the whole response, so a server trickling bytes cannot hold a worker.
    fetch_total_timeout_s: float = 30.0
    # Soft limit of one fetch task (reason `time_limit`): the page, its robots.txt and the name
    # lookups each have their own timeouts above; this is the net under them on the threads pool,
    # where Celery enforces no limits (tasks/watchdog.py).
    fetch_time_limit_s: float = 120.0
    # Bodies larger than this are refused (reason `too_large`); news pages are rarely > 3 MB.
    fetch_max_bytes: int = 8 * 1024 * 1024
    # More redirects than this is a loop (reason `too_many_redirects`).
    fetch_max_redirects: int = 8
    # Refuse loopback/private/link-local targets (SSRF guard) unless this is true.
    fetch_allow_private: bool = False
    # Comma-separated `host[:port]` exempt from the private-address guard (finer than the above).
    fetch_allow_hosts: str = ""

    # --- clean ---------------------------------------------------------------------------------
    # Pages larger than this are not parsed at all (reason `too_large`): parsing cost grows with size.
    clean_max_html_bytes: int = 5 * 1024 * 1024
    # Nor are pages of more elements than this (reason `too_large`): extraction time grows faster than
    # the element count, in long lxml calls no soft limit interrupts. Real pages have < 5,000 (0: no cap).
    clean_max_elements: int = 50_000
    # Extraction slower than this is cut off (reason `extract_timeout`).
    clean_time_limit_s: float = 20.0
    # A body shorter than this many characters is not an article (reason `no_article`).
    clean_min_body_chars: int = 200

    # Extraction steps switched off, comma-separated `newsflow.extract.options.ExtractOptions` field
    # names (e.g. `strip_pull_quotes`). Empty: every step on. Lets an operator try an extractor
    # change with `newsflow reprocess --dry-run` before the workers run it (docs/archive.md).
    clean_extract_disable: str = ""

    # --- archive: every fetch kept as WARC (docs/archive.md) -------------------------------------
    # Where fetch workers write their WARC files (and a .cdxj index beside each). `{data_dir}` is
    # replaced by data_dir. Empty turns archiving off. Several fetch hosts: one shared volume
    # mounted at the same path everywhere (file names carry host and pid, so no file is shared).
    archive_dir: str = "{data_dir}/warc"
    # A file is closed and a new one started once it is this large ...
    archive_roll_bytes: int = 1024 * 1024 * 1024
    # ... or this old, whichever comes first (a quiet worker does not keep a file open for days).
    archive_roll_s: int = 3600
    # gzip level of each record. 0-3 are ISA-L's (the `isal` wheel; 1: zlib-1's size at a quarter of
    # its CPU), 4-9 zlib's, smaller and several times dearer (bench/archive.py measures both).
    archive_gzip_level: int = 1
    # Retention, applied when a file rolls and by `newsflow archive prune`: the oldest files go first
    # once the archive is larger than this (0: no size limit) ...
    archive_max_bytes: int = 0
    # ... or older than this many days (0: kept forever). Files still being written are never removed.
    archive_max_age_days: float = 0.0
    # Reprocess and backfill stop sending while the clean queue holds more messages than this (the
    # crawl's backpressure, on the queue they feed): a large run never floods Redis with parked pages.
    archive_max_clean_queue: int = 2000

    # --- drift watch (newsflow/drift.py; `newsflow status --drift`) -----------------------------
    # Per source (or site), the newest this many articles are compared ...
    drift_window: int = 50
    # ... with this many before them, the source's own baseline.
    drift_baseline: int = 500
    # Fewer observations than these on either side never flag (small samples are noise).
    drift_min_window: int = 30
    drift_min_baseline: int = 100
    # A share (no_article, no date, no author, fallback body) moved if it changed by this much ...
    drift_min_change: float = 0.2
    # ... and by at least this many standard errors (two-proportion z-test).
    drift_min_z: float = 3.0

    # --- enrich --------------------------------------------------------------------------------
    # Enrichment running longer than this is cut off (reason `time_limit`). Its work is bounded by
    # the size of its input (newsflow/enrich), so only a bug or a starved machine gets here.
    enrich_time_limit_s: float = 30.0

    # --- claim check and documents ---------------------------------------------------------------
    # Raw HTML waits for the clean stage this long at most; it is deleted once cleaned.
    blob_ttl_s: int = 24 * 3600
    # Cleaned/enriched article documents wait for the index stage this long at most.
    doc_ttl_s: int = 7 * 24 * 3600
    # The article ledger (state, stage, reason per article) is kept this long after its last change.
    ledger_ttl_s: int = 30 * 24 * 3600
    # Dead letters are kept at most this many (oldest dropped first).
    deadletter_max: int = 100_000

    # --- delivery --------------------------------------------------------------------------------
    # Redis redelivers an unacked message after this long; every time limit and retry countdown
    # below stays under it, or a slow task would run twice.
    visibility_timeout_s: int = 3600
    # An article with no transition for this long is resumed by the reconciler: a worker killed
    # between taking a message and recording it as unacked loses that message (kombu's Redis
    # transport is not atomic there). Above the visibility timeout, so redelivery gets its chance.
    reconcile_after_s: int = 7200
    # How often `newsflow up` and beat run the reconciler.
    reconcile_interval_s: int = 300
    # Hard per-task time limit (the pool child is killed and the message retried).
    task_time_limit_s: int = 300
    # Transient errors retry this many times before the article is dead-lettered.
    max_retries: int = 5
    # First retry waits about this long; each next one twice as long (with jitter) ...
    retry_backoff_base_s: float = 2.0
    # ... but never longer than this.
    retry_backoff_max_s: float = 600.0

    # --- index -----------------------------------------------------------------------------------
    # The single index writer commits after this many documents ...
    index_batch_size: int = 64
    # ... or this long after the first uncommitted one, whichever comes first ...
    index_batch_max_wait_s: float = 2.0
    # ... or as soon as no new document came for this long (the burst is over): at a trickle an
    # article is searchable this long after it arrives; under load batches fill (newsflow/batcher.py).
    index_batch_idle_s: float = 0.1
    # A message waits this long at most for its batch's commit, then retries (`index_timeout`);
    # the soft limit of an index task (`time_limit`) is a little above it (tasks/watchdog.py).
    index_commit_wait_s: float = 120.0
    # Memory tantivy's writer may use for buffering before it flushes a segment.
    index_writer_heap_bytes: int = 128 * 1024 * 1024

    # --- local deployment (`newsflow up`) ----------------------------------------------------------
    # CPU-bound processes: shared `cpu` workers (or, per stage, processes of clean and of enrich);
    # 0 means one per core.
    worker_concurrency: int = 0
    # How `newsflow up` runs the CPU-bound stages on one host. "shared": that many single-process
    # (solo) workers, each taking both the clean and the enrich queue (the queues stay apart; a
    # stage can still get workers of its own: `newsflow worker clean`). No pool parent, no pipe to
    # a child, one process less per core to switch between: 1.4-1.8 ms less CPU per task than a
    # prefork worker per stage (docs/benchmarks.md). "per-stage": a worker per stage, in `cpu_pool`.
    cpu_workers: str = "shared"
    # Pool of a worker that runs one CPU-bound stage (`newsflow worker clean|enrich`, compose's
    # services, `cpu_workers=per-stage`). "prefork": one worker with that many children (Celery
    # enforces the time limits and recycles children). "solo": that many single-process workers,
    # for one process per container. A solo process (here, and every shared one) has its time
    # limits enforced and the message of a process that died handed back by tasks/solo.py.
    cpu_pool: str = "prefork"
    # Threads of the I/O-bound fetch worker.
    fetch_concurrency: int = 16
    # A prefork child is replaced after this many tasks, bounding slow leaks in parsers.
    worker_max_tasks_per_child: int = 2000
    # ... or once its resident memory exceeds this many kilobytes (a solo worker then exits for a fresh one).
    worker_max_memory_per_child_kb: int = 512 * 1024
    # How long `up` waits for every worker to answer before giving up.
    startup_timeout_s: float = 60.0
    # CPU priority of the workers `up` starts: this many nice steps below `up` itself (0: the same).
    # The search API (`newsflow serve`) stays at nice 0, so on a machine that both ingests and serves,
    # a query gets a core as soon as it needs one and ingestion takes every other cycle: at 10 a worker
    # weighs about a ninth of the API when both want the CPU. At 0, the worker processes outnumber two
    # cores and queries wait their turn: search p95 doubled or tripled while ingesting (docs/search.md,
    # bench/search.py --while-ingesting). compose.yaml gives the worker services a low cpu_shares.
    worker_nice: int = 10

    # --- crawling (docs/crawling.md) ---------------------------------------------------------------
    # The sources file (TOML): kind, location, schedule and link rules of each source. Empty means
    # the bundled, commented example `config/sources.toml` (its sources are disabled).
    crawl_sources_file: str = ""
    # `newsflow up` runs one `celery beat` when the sources file schedules an enabled source.
    crawl_beat: bool = True
    # URLs one run of a source enqueues at most, unless the source sets `max_items`.
    crawl_max_items: int = 1000
    # A feed or sitemap larger than this (after gunzip) is refused (reason `too_large`).
    crawl_max_doc_bytes: int = 20 * 1024 * 1024
    # Entries one sitemap may list (the sitemap protocol's own limit is 50,000).
    crawl_max_sitemap_entries: int = 50_000
    # Child sitemaps one sitemap index may make us fetch per run.
    crawl_max_child_sitemaps: int = 50
    # Backpressure: a crawl stops enqueueing while the fetch queue holds more messages than this ...
    crawl_max_fetch_queue: int = 2000
    # ... and gives up waiting for it after this long (what is left is found again by the next run).
    crawl_backpressure_max_wait_s: float = 600.0
    # One source's crawl lock expires after this long, so a crashed crawl cannot block its source.
    crawl_lock_ttl_s: int = 1800
    # Hard time limit of one crawl task (below the visibility timeout).
    crawl_time_limit_s: int = 1700
    # A URL a crawl enqueued is skipped by later crawls for this long (unless --refresh) ...
    crawl_seen_ttl_s: int = 30 * 24 * 3600
    # ... and the seen-set remembers at most this many URLs (oldest forgotten first).
    crawl_seen_max: int = 2_000_000
    # Threads of the crawl worker (each runs one source's crawl at a time).
    crawl_concurrency: int = 2

    # --- politeness (docs/crawling.md) -------------------------------------------------------------
    # Requests per second to one host[:port], by every fetch worker on every machine together ...
    polite_host_rate_per_s: float = 1.0
    # ... except these: comma-separated `host[:port]=rate`, e.g. `example.com=0.5,cdn.example.com=4`.
    polite_host_rates: str = ""
    # A fetch whose slot is further away than this is not booked; it comes back this much later.
    polite_max_reserve_s: float = 30.0
    # A booked slot at most this far away is waited for in the fetch thread; a later one is sent
    # again with a countdown (a publish and a consume, ~1 ms of CPU, to save holding a thread).
    polite_inline_wait_s: float = 0.25
    # Obey robots.txt: disallowed URLs are dead-lettered `robots_disallowed` and never fetched.
    polite_obey_robots: bool = True
    # robots.txt is fetched once per host and cached this long (RFC 9309: at most 24 h).
    polite_robots_ttl_s: int = 24 * 3600
    # Each worker process also keeps the rules it read in memory this long (one Redis read per
    # origin per interval instead of one per fetch); a changed robots.txt applies this much later.
    polite_robots_memo_s: float = 30.0
    # A robots.txt that could not be read (5xx, timeout) counts as "disallow all" this long.
    polite_robots_error_ttl_s: int = 300
    # Crawl-delay values above this are capped (a robots.txt saying 86400 would stall a host).
    polite_max_crawl_delay_s: float = 60.0
    # Pages that say noindex (meta robots, X-Robots-Tag) are dead-lettered `noindex`.
    polite_obey_noindex: bool = True

    # --- logs --------------------------------------------------------------------------------------
    # Minimum level of the JSON log lines on stderr.
    log_level: str = "INFO"

    # --- operations: Flower, Prometheus exporter, status (docs/operations.md) ---------------------
    # Address `newsflow flower` listens on. Anything but loopback requires flower_basic_auth.
    flower_address: str = "127.0.0.1"
    # Port of the Flower dashboard and its REST API.
    flower_port: int = 5555
    # Flower's HTTP basic auth as `user:password` (several comma-separated); empty = none (loopback only).
    flower_basic_auth: str = ""
    # Address and port of the Prometheus exporter (`newsflow metrics`); 9108 is free in the exporter registry.
    metrics_address: str = "127.0.0.1"
    metrics_port: int = 9108
    # Workers sum their counters in memory and write them to Redis this often (one round trip per
    # interval instead of several per task); metrics and per-source counts lag by up to this much.
    metrics_flush_s: float = 1.0
    # A queue whose oldest message waited longer than this is shown as stale by `newsflow status`.
    status_stale_queue_s: float = 300.0

    # --- reliability and hostile input (docs/reliability.md) -------------------------------------
    # Pin host names to addresses, like curl's --resolve: comma-separated `host:port:address`
    # (IPv6 in brackets). The SSRF guard checks the pinned addresses and connections go to them;
    # no DNS query is made for a pinned host. Empty: the system resolver answers.
    fetch_resolve: str = ""

    # --- search API and web page (`newsflow serve`, docs/search.md) ----------------------------------
    # Where the read-only HTTP API listens; loopback by default, so nothing is exposed by accident.
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    # Bearer token required by /search and /articles when non-empty. `serve` refuses a non-loopback
    # host without one (unless --no-auth), because the index may hold content meant for insiders.
    api_token: str = ""
    # Per-client (remote address) token bucket: sustained requests per minute (0: no limit), and the
    # burst allowed.
    api_rate_limit_per_min: int = 600
    api_rate_burst: int = 60
    # Largest page size a client may ask for.
    api_max_limit: int = 100

    # --- pipeline performance knobs (bench/pipeline.py, docs/benchmarks.md) ---------------------------
    # Celery task events (`-E`: task-sent/received/started/succeeded, one Redis PUBLISH each) cost
    # about a sixth of a CPU-bound worker's time. Off by default: `newsflow flower` turns them on in
    # running workers by itself (Flower's enable_events), and the ledger already records every step.
    worker_task_events: bool = False
    # A stage's commit also writes its forward (the next stage's message) and its ack, in the same
    # atomic script, where the broker is the state's Redis: two round trips fewer per hop
    # (tasks.base.commit). Off: each is its own round trip after the commit, as before (kept for
    # side-by-side measurement: bench/pipeline.py --variant NAME:commit_carries=false).
    commit_carries: bool = True

    # Derived: state Redis URL with the fallback applied.
    @property
    def state_url(self) -> str:
        return self.state_redis_url or self.redis_url

    @property
    def index_dir(self) -> str:
        return f"{self.data_dir.rstrip('/')}/index"

    @property
    def archive_path(self) -> str:
        """The WARC archive's directory, or "" when archiving is off."""
        return self.archive_dir.replace("{data_dir}", self.data_dir.rstrip("/")) if self.archive_dir.strip() else ""

    @property
    def allowed_hosts(self) -> frozenset[str]:
        return frozenset(h.strip().lower() for h in self.fetch_allow_hosts.split(",") if h.strip())


# Fields that must never appear in logs (they may carry passwords).
SECRET_FIELDS: frozenset[str] = frozenset(
    {"redis_url", "state_redis_url", "redis_sentinel_password", "flower_basic_auth", "api_token"}
)
