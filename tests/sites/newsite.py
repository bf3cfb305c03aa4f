"""A small news site for crawl tests, served over real HTTP on a loopback address.

`SiteServer` serves a dict of routes, answers conditional GETs (ETag / Last-Modified -> 304),
can answer 429 + Retry-After to the first request of chosen paths, and logs every request with
its time, so tests can check what was (and was never) requested and how fast.
`news_site(base)` builds the site: articles, a robots.txt that disallows /private/, an RSS feed,
an Atom feed, a sitemap index with a Google News sitemap and a gzip urlset, noindex pages, and
links that the link rules must drop (tags, authors, off-site).
"""

from __future__ import annotations

import gzip
import hashlib
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from xml.sax.saxutils import escape

LAST_MODIFIED = "Wed, 25 Nov 2026 10:00:00 GMT"
WORDS = [
    "council",
    "harbour",
    "budget",
    "engineers",
    "river",
    "festival",
    "rail",
    "ministry",
    "farmers",
    "storm",
    "museum",
    "league",
    "hospital",
    "library",
    "bridge",
    "solar",
    "vaccine",
    "election",
    "drought",
    "orchestra",
    "airport",
    "forest",
    "teachers",
    "fishermen",
    "mountain",
    "coastline",
    "tunnel",
    "reservoir",
    "parliament",
    "satellite",
    "glacier",
    "vineyard",
]


@dataclass
class Route:
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    throttle_first: float | None = None  # answer 429 with this Retry-After to the first request
    last_modified: str = LAST_MODIFIED  # a page that changes must say so, or a conditional GET gets 304


@dataclass
class Hit:
    t: float
    host: str
    path: str
    status: int


class SiteServer:
    def __init__(self, routes: dict[str, Route], host: str = "127.0.0.1", port: int = 0) -> None:
        self.routes = routes
        self.log: list[Hit] = []
        self._lock = threading.Lock()
        self._throttled: set[str] = set()
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=f"site-{host}", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def hits(self, path: str | None = None, since: float = 0.0) -> list[Hit]:
        with self._lock:
            return [h for h in self.log if h.t >= since and (path is None or h.path == path)]

    def _record(self, path: str, status: int) -> None:
        with self._lock:
            self.log.append(Hit(time.time(), self.base_url, path, status))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                route = server.routes.get(path)
                if route is None:
                    return self._send(path, 404, b"not found", {"Content-Type": "text/plain"})
                if route.throttle_first is not None and path not in server._throttled:
                    server._throttled.add(path)
                    return self._send(
                        path,
                        429,
                        b"slow down",
                        {"Content-Type": "text/plain", "Retry-After": f"{route.throttle_first:g}"},
                    )
                etag = '"' + hashlib.sha1(route.body).hexdigest()[:16] + '"'
                validators = {"ETag": etag, "Last-Modified": route.last_modified}
                if self.headers.get("If-None-Match") == etag or self.headers.get("If-Modified-Since") == (
                    route.last_modified
                ):
                    return self._send(path, 304, b"", validators)
                headers = {"Content-Type": route.content_type, **validators, **route.headers}
                return self._send(path, route.status, route.body, headers)

            def _send(self, path: str, status: int, body: bytes, headers: dict[str, str]) -> None:
                server._record(path, status)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> SiteServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def article_html(n: int, title: str, extra_head: str = "") -> bytes:
    """A plain article page with well over 200 characters of body text."""
    paras = []
    for p in range(5):
        words = [WORDS[(n * 7 + p * 3 + i) % len(WORDS)] for i in range(40)]
        paras.append(f"<p>Story {n} paragraph {p}: " + " ".join(words) + f". Marker zq{n}x appears here.</p>")
    published = (datetime(2026, 11, 20, tzinfo=UTC) + timedelta(hours=n)).isoformat()
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
        f"<meta property='article:published_time' content='{published}'>{extra_head}</head>"
        f"<body><nav><a href='/'>Home</a> <a href='/tag/politics'>Politics</a></nav>"
        f"<article><h1>{title}</h1>{''.join(paras)}</article><footer>Local News Ltd</footer></body></html>"
    ).encode()


def _rss(base: str, paths: list[str]) -> bytes:
    items = "".join(
        f"<item><title>Feed title {escape(p)}</title><link>{base}{p}</link>"
        f"<pubDate>{format_datetime(datetime(2026, 11, 20, 8, tzinfo=UTC))}</pubDate></item>"
        for p in paths
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>Local News</title><link>{base}/</link>'
        f"<language>en</language>{items}</channel></rss>"
    ).encode()


def _atom(base: str, paths: list[str]) -> bytes:
    entries = "".join(
        f"<entry><title>Atom {escape(p)}</title><link rel='alternate' type='text/html' href='{p}'/>"
        f"<id>{base}{p}</id><updated>2026-11-20T08:00:00Z</updated></entry>"
        for p in paths
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom" xml:base="{base}/">'
        f"<title>Local News (Atom)</title><id>{base}/atom.xml</id><updated>2026-11-20T08:00:00Z</updated>"
        f"{entries}</feed>"
    ).encode()


def _news_sitemap(base: str, paths: list[str]) -> bytes:
    urls = "".join(
        f"<url><loc>{base}{p}</loc><news:news><news:publication><news:name>Local News</news:name>"
        f"<news:language>en</news:language></news:publication>"
        f"<news:publication_date>2026-11-20T09:00:00Z</news:publication_date>"
        f"<news:title>News sitemap {escape(p)}</news:title></news:news></url>"
        for p in paths
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
        f'xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">{urls}</urlset>'
    ).encode()


def _urlset(base: str, paths: list[str]) -> bytes:
    urls = "".join(f"<url><loc>{base}{p}</loc><lastmod>2026-11-19</lastmod></url>" for p in paths)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'
    ).encode()


@dataclass
class NewsSite:
    routes: dict[str, Route]
    articles: list[str]  # paths that must end up indexed
    disallowed: list[str]  # paths robots.txt forbids: never requested
    filtered: list[str]  # links the link rules drop: never requested
    noindex: list[str]  # fetched, then dead-lettered `noindex`


def news_site(base: str) -> NewsSite:
    """The site's routes; `base` is the site's own origin (links in feeds are absolute)."""
    articles = [f"/news/story-{n}.html" for n in range(1, 11)]
    disallowed = ["/private/secret-1.html", "/private/secret-2.html"]
    filtered = ["/tag/politics", "/author/jane-doe"]
    noindex = ["/news/noindex-meta.html", "/news/noindex-header.html"]
    routes: dict[str, Route] = {}
    for i, path in enumerate(articles, start=1):
        routes[path] = Route(article_html(i, f"Story number {i} from the local desk"))
    for i, path in enumerate(disallowed, start=50):
        routes[path] = Route(article_html(i, "Private page that robots.txt forbids"))
    routes[noindex[0]] = Route(article_html(60, "Meta noindex page", "<meta name='robots' content='noindex, follow'>"))
    routes[noindex[1]] = Route(article_html(61, "Header noindex page"), headers={"X-Robots-Tag": "noindex"})
    routes["/robots.txt"] = Route(b"User-agent: *\nDisallow: /private/\n", "text/plain")
    # RSS: stories 1-4, a disallowed page, a tag page, an off-site link, a noindex page.
    rss_paths = [*articles[0:4], disallowed[0], filtered[0], noindex[0]]
    routes["/rss.xml"] = Route(
        _rss(base, rss_paths).replace(
            b"</channel>", b"<item><link>https://elsewhere.example/x.html</link></item></channel>"
        ),
        "application/rss+xml",
    )
    # Atom overlaps RSS (stories 3-4): each article must still be fetched once.
    routes["/atom.xml"] = Route(_atom(base, [*articles[2:6], noindex[1]]), "application/atom+xml")
    routes["/sitemap-news.xml"] = Route(_news_sitemap(base, [*articles[6:9], disallowed[1]]), "application/xml")
    routes["/sitemap-pages.xml.gz"] = Route(
        gzip.compress(_urlset(base, [articles[9], filtered[1], articles[0]])), "application/x-gzip"
    )
    routes["/sitemap_index.xml"] = Route(
        (
            '<?xml version="1.0" encoding="UTF-8"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"<sitemap><loc>{base}/sitemap-news.xml</loc><lastmod>2026-11-20T09:00:00Z</lastmod></sitemap>"
            f"<sitemap><loc>{base}/sitemap-pages.xml.gz</loc><lastmod>2026-11-19</lastmod></sitemap>"
            "</sitemapindex>"
        ).encode(),
        "application/xml",
    )
    return NewsSite(routes, articles, disallowed, filtered, noindex)


def throttled_site(n: int = 2, retry_after_s: float = 1.0) -> NewsSite:
    """A host that answers 429 + Retry-After to the first request of every article."""
    articles = [f"/slow/article-{i}.html" for i in range(1, n + 1)]
    routes = {
        p: Route(article_html(100 + i, f"Throttled story {i}"), throttle_first=retry_after_s)
        for i, p in enumerate(articles)
    }
    routes["/robots.txt"] = Route(b"User-agent: *\nAllow: /\n", "text/plain")
    return NewsSite(routes, articles, [], [], [])
