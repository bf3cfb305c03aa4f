"""Near-duplicate / syndication clusters shared by every worker: MinHash LSH kept in Redis.

Keys (all under `{prefix}cluster:`, all with a TTL, lists capped):
- `{prefix}cluster:doc:{article_id}`  hash: cluster, sig (NUM_PERM little-endian uint32), n (shingles)
- `{prefix}cluster:band:{band}:{hash}` list of article ids whose signature has that band, newest first

One Lua script does lookup, verification and insertion, so two copies of a story enriched at the same
moment cannot both found a cluster: Redis runs scripts one at a time. It reads candidate `doc` keys it
was not passed in KEYS, which is fine on a single Redis (or a primary with replicas) but not on Redis
Cluster — there, all cluster keys would need one hash slot.
"""

from __future__ import annotations

from typing import Any, cast

import redis

from newsflow.enrich.minhash import NUM_PERM, band_keys, shingle_hashes, signature

TTL_S = 30 * 24 * 3600  # syndicated copies and revisions arrive within days; a month leaves margin
BAND_CAP = 50  # ids kept per band bucket: boilerplate shared by thousands of pages must not grow a bucket
MAX_VERIFY = 25  # candidates compared per article, most band hits first
JACCARD_MIN = 0.4  # estimated Jaccard at which two texts are one story
CONTAINMENT_MIN = 0.75  # ... or this share of the shorter text is in the longer (a copy cut to a few paragraphs)
CONTAINMENT_MIN_SHINGLES = 20  # containment of a very short text says little

_SCRIPT = """
local aid, sig, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ttl, cap, docprefix = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local jmin, cmin, maxv = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local nperm, cmin_n = tonumber(ARGV[10]), tonumber(ARGV[11])

local existing = redis.call('HGET', KEYS[1], 'cluster')
if existing then
  redis.call('EXPIRE', KEYS[1], ttl)
  return {existing, 'existing', '1'}
end

local hits = {}
for i = 2, #KEYS do
  for _, m in ipairs(redis.call('LRANGE', KEYS[i], 0, -1)) do
    if m ~= aid then hits[m] = (hits[m] or 0) + 1 end
  end
end
local cands = {}
for m, c in pairs(hits) do cands[#cands + 1] = {m, c} end
table.sort(cands, function(x, y) if x[2] ~= y[2] then return x[2] > y[2] end return x[1] < y[1] end)

local best, best_score = false, -1
for i = 1, math.min(#cands, maxv) do
  local doc = redis.call('HMGET', docprefix .. cands[i][1], 'cluster', 'sig', 'n')
  if doc[1] and doc[2] and string.len(doc[2]) == string.len(sig) then
    local other, same = doc[2], 0
    for p = 1, nperm * 4, 4 do
      if string.sub(sig, p, p + 3) == string.sub(other, p, p + 3) then same = same + 1 end
    end
    local j = same / nperm
    local n2 = tonumber(doc[3]) or 0
    local smaller = math.min(n, n2)
    local containment = 0
    if smaller >= cmin_n then containment = (j * (n + n2) / (1 + j)) / smaller end
    if (j >= jmin or containment >= cmin) and j + containment > best_score then
      best, best_score = doc[1], j + containment
    end
  end
end

local cluster = best or aid
redis.call('HSET', KEYS[1], 'cluster', cluster, 'sig', sig, 'n', n)
redis.call('EXPIRE', KEYS[1], ttl)
for i = 2, #KEYS do
  redis.call('LPUSH', KEYS[i], aid)
  redis.call('LTRIM', KEYS[i], 0, cap - 1)
  redis.call('EXPIRE', KEYS[i], ttl)
end
if best then return {cluster, 'joined', tostring(best_score)} end
return {cluster, 'new', '0'}
"""


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def assign_cluster(r: redis.Redis, prefix: str, article_id: str, text: str) -> str:
    """The cluster id of the article: the id of the first article of its story seen by any worker.

    Idempotent: an article id already assigned keeps its cluster, whatever the text is now.
    """
    return assign_cluster_detail(r, prefix, article_id, text)[0]


def assign_cluster_detail(r: redis.Redis, prefix: str, article_id: str, text: str) -> tuple[str, str, float]:
    """(cluster id, 'new' | 'joined' | 'existing', match score) — the score is for tests and tuning."""
    hashes = shingle_hashes(text)
    sig = signature(hashes)
    base = f"{prefix}cluster:"
    # No shingles: nothing to compare, and empty signatures are all equal, so no band keys.
    bands = [f"{base}band:{key}" for key in band_keys(sig)] if hashes.size else []
    result = cast(list[Any], r.eval(
        _SCRIPT,
        1 + len(bands),
        f"{base}doc:{article_id}",
        *bands,
        article_id,
        sig.astype("<u4").tobytes(),
        int(hashes.size),
        TTL_S,
        BAND_CAP,
        f"{base}doc:",
        JACCARD_MIN,
        CONTAINMENT_MIN,
        MAX_VERIFY,
        NUM_PERM,
        CONTAINMENT_MIN_SHINGLES,
    ))
    return _decode(result[0]), _decode(result[1]), float(_decode(result[2]))


class ClusterStore:
    """Near-duplicate signatures and their LSH bands in Redis (keys `cluster:*`, see above)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._r = client
        self._p = prefix

    def assign(self, article_id: str, text: str) -> str:
        return assign_cluster(self._r, self._p, article_id, text)
