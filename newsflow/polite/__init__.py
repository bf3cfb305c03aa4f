"""Politeness: robots.txt (cached once per host in Redis), a per-host rate limiter shared by every
fetch worker on every machine (a Redis script), and noindex detection.

Hosts are keyed by `host[:port]` (the port only when it is not the scheme's default): two ports
of one machine are two sites to robots.txt (RFC 9309 scopes it by scheme, host and port), and the
limiter uses the same key so both agree on what "a host" is.
"""
