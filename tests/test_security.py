"""Secrets and transport security, end to end with real processes.

- A password-protected redis-server (`--requirepass`): the whole pipeline runs over it, and the
  password never shows in the workers' JSON logs nor in the CLI's errors.
- A TLS-only redis-server (`--tls-port`, throwaway CA made with openssl at test time): the whole
  pipeline runs over `rediss://`, verifying the server's certificate.
"""

from __future__ import annotations

import os
import secrets
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tasks.celeryconfig import broker_ssl
from tests.conftest import BENCH_DIR, ROOT, SEED_HTML, fixtures_available, need
from tests.hostile.origin import FaultyOrigin
from tests.hostile.rig import RedisProc, Rig, free_port, log_events, temp_root

pytestmark = pytest.mark.integration

N_PAGES = 6


@pytest.fixture(scope="module")
def origin() -> Iterator[FaultyOrigin]:
    need(fixtures_available(), "benchmark fixtures missing")
    with FaultyOrigin(BENCH_DIR / "html", SEED_HTML) as server:
        yield server


def small_env(origin: FaultyOrigin) -> dict[str, str]:
    return {
        "NEWSFLOW_FETCH_ALLOW_PRIVATE": "0",
        "NEWSFLOW_FETCH_ALLOW_HOSTS": f"127.0.0.1:{origin.port}",
        "NEWSFLOW_POLITE_HOST_RATES": f"127.0.0.1:{origin.port}=10000,127.0.0.1=10000",
        "NEWSFLOW_POLITE_OBEY_ROBOTS": "0",
        "NEWSFLOW_WORKER_CONCURRENCY": "1",
        "NEWSFLOW_FETCH_CONCURRENCY": "4",
        "NEWSFLOW_INDEX_BATCH_SIZE": "8",
        "NEWSFLOW_INDEX_BATCH_MAX_WAIT_S": "0.3",
        "NEWSFLOW_CRAWL_BEAT": "0",
        "NEWSFLOW_LOG_LEVEL": "DEBUG",  # the chattiest logs are the likeliest to leak
    }


def run_pages(rig: Rig, origin: FaultyOrigin, label: str) -> None:
    ids = [s.article_id for s in rig.submit(origin.urls(label, N_PAGES))]
    rig.wait(ids, 120)
    counts = rig.check_invariants(ids, label)
    assert counts.indexed >= N_PAGES - 1, counts.line(label)


def cli(args: list[str], redis_url: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NEWSFLOW_REDIS_URL": redis_url, "NEWSFLOW_DATA_DIR": str(tmp), "NEWSFLOW_LOG_LEVEL": "DEBUG"}
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_password_protected_redis_end_to_end_and_no_leak(origin: FaultyOrigin) -> None:
    password = "pw-" + secrets.token_hex(12)
    with temp_root("security-pw") as root:
        server = RedisProc(root / "redis", password=password)
        with Rig(root, small_env(origin), server) as rig:
            # The server really wants the password.
            with pytest.raises(redis.AuthenticationError):
                redis.Redis(port=server.port).ping()
            run_pages(rig, origin, "password")
            log_text = rig.log_path.read_text(errors="replace")
            assert len(log_events(rig.log_path)) > 20, "the workers wrote no JSON logs"
            assert password not in log_text
            # CLI errors: wrong password, and a Redis that does not answer at all.
            wrong = f"redis://:{password}x@127.0.0.1:{server.port}/0"
            down = f"redis://:{password}@127.0.0.1:{free_port()}/0"
            for url in (wrong, down):
                proc = cli(["ingest", f"{origin.base_url}/seed.html", "--timeout", "5"], url, root / "cli")
                assert proc.returncode != 0
                assert password not in proc.stderr + proc.stdout, (proc.stderr + proc.stdout)[-2000:]
                assert "newsflow: error" in proc.stderr or "Error" in proc.stderr, proc.stderr[-2000:]


def _make_certs(where: Path) -> dict[str, str]:
    """A throwaway CA and a server certificate for 127.0.0.1, made with openssl."""
    openssl = shutil.which("openssl")
    need(openssl is not None, "openssl not installed")
    assert openssl is not None
    where.mkdir(parents=True, exist_ok=True)
    names = ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    ca_key, ca, key, csr, cert = (str(where / n) for n in names)
    ext = where / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    steps = [
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
         "-days", "1", "-subj", "/CN=newsflow test CA"],
        [openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        [openssl, "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
         "-days", "1", "-extfile", str(ext)],
    ]  # fmt: skip
    for cmd in steps:
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return {"ca": ca, "cert": cert, "key": key}


def test_tls_redis_end_to_end(origin: FaultyOrigin) -> None:
    password = "tls-" + secrets.token_hex(8)
    with temp_root("security-tls") as root:
        certs = _make_certs(root / "certs")
        server = RedisProc(root / "redis", password=password, tls=certs)
        try:
            server.start()
        except Exception as exc:
            need("TLS" not in str(exc) and "tls" not in str(exc), f"this redis-server has no TLS support: {exc}")
            raise
        server.stop()
        assert server.url.startswith("rediss://")
        # Without our CA the server's certificate is not trusted: verification is on.
        untrusted = f"rediss://:{password}@127.0.0.1:{server.port}/0"
        with Rig(root, small_env(origin), server) as rig:
            with pytest.raises(redis.ConnectionError):
                redis.Redis.from_url(untrusted, socket_connect_timeout=3).ping()
            run_pages(rig, origin, "tls")
            assert password not in rig.log_path.read_text(errors="replace")
            assert rig.app.conf.broker_use_ssl["ssl_cert_reqs"] == ssl.CERT_REQUIRED


def test_broker_ssl_options() -> None:
    assert broker_ssl("redis://127.0.0.1:6379/0") is None
    assert broker_ssl("rediss://h:6380/0") == {"ssl_cert_reqs": ssl.CERT_REQUIRED}  # verify by default
    opts = broker_ssl("rediss://:pw@h:6380/0?ssl_cert_reqs=CERT_REQUIRED&ssl_ca_certs=/ca.pem")
    assert opts == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/ca.pem"}
    assert broker_ssl("rediss://h/0?ssl_cert_reqs=none") == {"ssl_cert_reqs": ssl.CERT_NONE}
    with pytest.raises(ValueError):
        broker_ssl("rediss://h/0?ssl_cert_reqs=maybe")


def test_redact_url() -> None:
    from config.settings import redact_url

    assert redact_url("redis://:hunter2@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert redact_url("rediss://user:hunter2@redis.example:6380/0?ssl_cert_reqs=required") == (
        "rediss://user:***@redis.example:6380/0?ssl_cert_reqs=required"
    )
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_url("redis://token@h:6379/0") == "redis://***@h:6379/0"  # alone, it may be the secret
    assert redact_url("redis://:p%40ss@[::1]:6380/1") == "redis://:***@[::1]:6380/1"  # host kept as written
    assert redact_url("redis://:pa@ss@h/0") == "redis://:***@h/0"  # an unescaped @ in the password
    # Malformed beyond splitting, and each part of a sentinel URL on its own:
    assert "hunter2" not in redact_url("redis://:hunter2@host:notaport/0")
    assert "hunter2" not in redact_url(":hunter2@h")
    sentinel = redact_url("sentinel://:s1@a:26379;sentinel://:s2@b:26379;sentinel://c:26379")
    assert sentinel == "sentinel://:***@a:26379;sentinel://:***@b:26379;sentinel://c:26379"
