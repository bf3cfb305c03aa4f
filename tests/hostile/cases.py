"""The hostile cases: what each input is and what must come of it.

One table serves both suites: `tests/test_hostile_fetch.py` runs each case through
`newsflow.fetcher.fetch_page` (fast), `tests/test_hostile_pipeline.py` pushes them all through a
real deployment next to good pages. `docs/reliability.md` lists them.

`fetch` is the fetcher's verdict: "ok" (the page comes back, and `must_contain` is in its HTML),
or the reason of the PermanentError / TransientError it raises. `outcome` is the pipeline's:
"indexed", or the dead-letter reason (after retries, for transient ones).
"""

from __future__ import annotations

from dataclasses import dataclass

from config.defaults import Settings

# The fetch suites' total deadline per fetch: short, so a stalling route costs seconds.
TOTAL_DEADLINE_S = 2.0
IDN_HOST = "bücher.example"  # pinned to 127.0.0.1 with fetch_resolve; no DNS query leaves the machine
REBIND_HOST = "rebind.example"  # pinned to 127.0.0.1 but NOT allow-listed: must be refused


@dataclass(frozen=True)
class Case:
    name: str
    # A path on the hostile server ("/x"), or a whole URL template with {port} / {base}.
    target: str
    fetch: str  # "ok" or the error reason
    transient: bool = False  # the fetch error is a TransientError (retried, then dead-lettered)
    outcome: str = ""  # pipeline outcome; defaults to `fetch` ("ok" -> "indexed")
    must_contain: str = ""
    why: str = ""
    at_submit: bool = False  # http(s), but with no article id at all: refused by `newsflow ingest`

    def url(self, port: int) -> str:
        base = f"http://127.0.0.1:{port}"
        if self.target.startswith("/"):
            return base + self.target
        return self.target.format(port=port, base=base)

    @property
    def expected_outcome(self) -> str:
        if self.outcome:
            return self.outcome
        return "indexed" if self.fetch == "ok" else self.fetch

    @property
    def submit_rejected(self) -> bool:
        """Refused by `newsflow ingest` before any message is sent (not an http(s) URL, or one the
        id normalisation refuses)."""
        return self.at_submit or self.target.split(":", 1)[0] in ("file", "ftp", "gopher")


CASES: list[Case] = [
    # --- markup ---------------------------------------------------------------------------------
    Case("malformed_html", "/malformed", "ok", must_contain="Unclosed paragraph 3",
         why="unclosed, misnested tags and stray bytes: extracted like a browser would"),
    Case("unclosed_comment", "/unclosed-comment", "ok", outcome="no_article", must_contain="never closed",
         why="'<!--' never closed hides the whole body, as in a browser: no article, said clearly"),
    Case("deep_nesting_200", "/deep-nesting-200", "ok", must_contain="Deep nesting survives",
         why="200 nested <div>s, then the article: parsed and indexed"),
    Case("deep_nesting_1000", "/deep-nesting-1000", "ok", must_contain="Deep nesting survives",
         why="1,000 nested <div>s, then the article: libxml2's huge mode parses 2,048 levels; indexed"),
    Case("deep_nesting_100k", "/deep-nesting", "ok", outcome="no_article", must_contain="Deep nesting survives",
         why="100,000 nested <div>s: libxml2 stops at depth 2,048 and drops what follows (known limit, "
         "see docs/reliability.md); no crash, dead-lettered no_article"),
    Case("many_elements", "/many-elements", "ok", outcome="too_large", must_contain="Word here",
         why="4.6 MB of 280,000 one-line paragraphs (under the byte caps): more elements than extraction "
         "takes on (clean_max_elements), refused in a second instead of hours of CPU; dead too_large"),
    # --- size and compression -----------------------------------------------------------------------
    Case("page_50mb_declared", "/huge-declared", "too_large", why="Content-Length of 50 MB refused before reading"),
    Case("page_50mb_chunked", "/huge-chunked", "too_large", why="50 MB without a length: cut off at fetch_max_bytes"),
    Case("gzip_bomb", "/gzip-bomb", "too_large", why="256 MB of zeros in 256 kB of gzip: stops at the cap"),
    Case("broken_gzip", "/bad-gzip", "bad_encoding", why="Content-Encoding: gzip over garbage"),
    # --- not HTML -------------------------------------------------------------------------------------
    Case("pdf_as_html", "/pdf-as-html", "not_html", why="%PDF served as text/html"),
    Case("png_as_html", "/png-as-html", "not_html", why="PNG served as text/html"),
    Case("binary_without_type", "/binary-no-type", "not_html", why="bytes with NULs and no Content-Type"),
    Case("json_type", "/json", "not_html", why="application/json"),
    Case("plain_text_with_markup", "/plain-with-markup", "ok", must_contain="flood wall",
         why="text/plain that is really HTML: sniffed and accepted"),
    # --- charsets -------------------------------------------------------------------------------------
    Case("cp1251_header", "/cp1251", "ok", must_contain="Городской совет", why="charset=windows-1251 in the header"),
    Case("cp1251_meta_only", "/cp1251-meta-only", "ok", must_contain="Городской совет",
         why="no header charset; <meta charset=windows-1251>"),
    Case("cp1251_wrong_header", "/cp1251-wrong-header", "ok", must_contain="Городской совет",
         why="header claims utf-8, bytes are cp1251: the meta charset wins"),
    Case("cp1251_no_charset", "/cp1251-no-charset", "ok", must_contain="Городской совет",
         why="no charset anywhere: detected from the bytes"),
    Case("shift_jis", "/shift-jis", "ok", must_contain="市議会", why="charset=Shift_JIS"),
    Case("utf16_bom", "/utf16-bom", "ok", must_contain="Городской совет", why="UTF-16LE with a BOM, no charset"),
    Case("utf16_declared_no_bom", "/utf16-declared", "ok", must_contain="Городской совет",
         why="UTF-16LE declared in the header, no BOM (full of NUL bytes, yet text)"),
    Case("codec_trick_charset", "/codec-trick", "ok", must_contain="flood wall",
         why="charset=zlib_codec: a bytes-to-bytes codec is never run on input"),
    Case("unknown_charset", "/unknown-charset", "ok", must_contain="flood wall", why="charset=x-no-such-charset"),
    Case("utf16_no_bom_no_charset", "/utf16-no-bom", "ok", must_contain="Городской совет",
         why="UTF-16LE with neither a BOM nor a charset: told by its NULs, not refused as binary"),
    # --- status codes ---------------------------------------------------------------------------------
    Case("empty_200", "/empty", "empty_body", why="200 with no body"),
    Case("blank_200", "/blank", "empty_body", why="200 with only whitespace"),
    Case("not_found_404", "/nothing-here", "http_404"),
    Case("gone_410", "/gone", "http_410"),
    Case("no_content_204", "/no-content", "http_204"),
    Case("unconditional_304", "/unconditional-304", "http_304",
         why="304 to a request that was not conditional must not count as 'indexed'"),
    Case("server_error_500", "/error-500", "http_500", transient=True, why="retried with backoff, then dead-lettered"),
    Case("rate_limited_429", "/rate-limited", "http_429", transient=True, why="Retry-After honoured, then dead"),
    Case("retry_after_not_ascii", "/rate-limited-odd-retry-after", "http_429", transient=True,
         why="Retry-After: ² (a digit to str.isdigit, not to float): a 429 like any other, not a crash"),
    # --- redirects ------------------------------------------------------------------------------------
    Case("redirect_loop", "/loop-a", "redirect_loop", why="/loop-a -> /loop-b -> /loop-a"),
    Case("self_redirect", "/self-redirect", "redirect_loop"),
    Case("endless_redirects", "/endless/0", "too_many_redirects", why="a new URL every hop"),
    Case("redirect_to_metadata_ip", "/redirect-metadata", "private_address",
         why="302 to 169.254.169.254: refused before any connection"),
    Case("redirect_to_10_net", "/redirect-private-10", "private_address", why="302 to 10.0.0.1"),
    Case("redirect_to_other_loopback_port", "/redirect-loopback-other-port", "private_address",
         why="only the origin's host:port is allow-listed"),
    Case("redirect_to_localhost", "/redirect-localhost", "private_address",
         why="same port, but 'localhost' is not the allow-listed host"),
    Case("redirect_to_file", "/redirect-file", "bad_scheme", why="302 to file:///etc/passwd"),
    Case("redirect_to_gopher", "/redirect-gopher", "bad_scheme"),
    Case("redirect_then_ok", "/redirect-ok", "ok", must_contain="flood wall", why="an ordinary same-host redirect"),
    Case("redirect_malformed_ipv6", "/redirect-bad-ipv6", "bad_url", why="Location: http://[::1/x, refused"),
    # --- slow and broken servers ------------------------------------------------------------------------
    Case("trickle_body_1_byte_per_s", "/trickle-body", "timeout", transient=True,
         why="one byte a second: the total deadline ends it, not the read timeout"),
    Case("trickle_headers_1_byte_per_s", "/trickle-headers", "timeout", transient=True),
    Case("hanging_server", "/hang", "timeout", transient=True, why="accepts, never answers"),
    Case("closes_without_answer", "/close-no-answer", "connection_error", transient=True),
    Case("too_many_headers", "/too-many-headers", "connection_error", transient=True,
         why="500 response headers: refused by the HTTP client"),
    Case("conflicting_content_length", "/conflicting-length", "bad_response",
         why="two Content-Length headers that disagree: the body cannot be framed"),
    Case("meta_spam_unclosed", "/meta-spam", "ok", must_contain="flood wall",
         why="40,000 unclosed <meta in the head: the noindex check stays linear (it once held the "
         "fetch worker's every thread for 12-18 s)"),
    # --- URLs -----------------------------------------------------------------------------------------
    Case("file_url", "file:///etc/passwd", "bad_scheme", outcome="bad_url"),
    Case("ftp_url", "ftp://127.0.0.1:{port}/ok", "bad_scheme", outcome="bad_url"),
    Case("gopher_url", "gopher://127.0.0.1:{port}/ok", "bad_scheme", outcome="bad_url"),
    Case("credentials_in_url", "http://user:secret@127.0.0.1:{port}/ok", "bad_url", at_submit=True,
         why="never sent anywhere: user info has no article id (newsflow/urls.py)"),
    Case("url_10kb", "{base}/ok?q=" + "a" * 10_000, "bad_url", why="10 kB URL"),
    Case("idn_host", "http://" + IDN_HOST + ":{port}/ok", "ok", must_contain="flood wall",
         why="IDN host, IDNA-encoded and pinned to the origin with fetch_resolve"),
    Case("host_pinned_to_loopback", "http://" + REBIND_HOST + ":{port}/ok", "private_address",
         why="a name resolving to 127.0.0.1 (think DNS rebinding) that is not allow-listed"),
    Case("metadata_ip_direct", "http://169.254.169.254/latest/meta-data/", "private_address"),
    Case("loopback_hex_ip", "http://0x7f.0.0.1:{port}/ok", "private_address", why="127.0.0.1 spelled in hex"),
    Case("loopback_decimal_ip", "http://2130706433:{port}/ok", "private_address", why="127.0.0.1 as one number"),
    Case("ipv6_loopback", "http://[::1]:{port}/ok", "private_address"),
    Case("ipv4_mapped_ipv6_loopback", "http://[::ffff:127.0.0.1]:{port}/ok", "private_address"),
    Case("ipv4_compatible_ipv6_loopback", "http://[::7f00:1]:{port}/ok", "private_address",
         why="::127.0.0.1, the deprecated IPv4-compatible form"),
    Case("ipv4_translated_ipv6_loopback", "http://[::ffff:0:7f00:1]:{port}/ok", "private_address",
         why="::ffff:0:127.0.0.1, IPv4-translated (RFC 2765)"),
    Case("nat64_metadata_ip", "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/", "private_address",
         why="169.254.169.254 behind the NAT64 well-known prefix 64:ff9b::/96"),
    Case("nat64_local_use_10_net", "http://[64:ff9b:1:a00:0:100::]/admin", "private_address",
         why="10.0.0.1 in the local-use NAT64 block 64:ff9b:1::/48, /48 layout around bits 64-71 (RFC 8215)"),
    Case("sixtofour_loopback", "http://[2002:7f00:1::1]:{port}/ok", "private_address",
         why="6to4 2002::/16 carrying 127.0.0.1 in bits 16-47"),
    Case("teredo_client_loopback", "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]:{port}/ok", "private_address",
         why="Teredo: public server 65.54.227.120, client 127.0.0.1 stored inverted in the last 32 bits"),
    Case("cgnat_address", "http://100.64.0.1/", "private_address", why="100.64/10 is not public either"),
]  # fmt: skip


def by_name(name: str) -> Case:
    return next(c for c in CASES if c.name == name)


def strict_fetch_settings(allow_hosts: str, **overrides: object) -> Settings:
    """Production's address guard (private targets refused) with only `allow_hosts` let through,
    and short timeouts."""
    values: dict[str, object] = {
        "fetch_allow_private": False,
        "fetch_allow_hosts": allow_hosts,
        "fetch_connect_timeout_s": 2.0,
        "fetch_read_timeout_s": 1.5,
        "fetch_total_timeout_s": TOTAL_DEADLINE_S,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]
