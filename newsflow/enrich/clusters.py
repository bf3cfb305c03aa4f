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

import hashlib
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

-- A signature's values come from one struct.unpack (a C call) instead of a 4-byte substring per
-- value (string.sub interns every one of them); this article's, on the first comparison only (an
-- article without candidates compares nothing).
local layout = '<' .. string.rep('I4', nperm)
local mine = nil

-- estimated Jaccard and containment of this text against a stored signature (false if unusable)
local function likeness(other, n2)
  if mine == nil then mine = string.len(sig) == nperm * 4 and {struct.unpack(layout, sig)} or false end
  if not mine or not other or string.len(other) ~= string.len(sig) then return false end
  local theirs = {struct.unpack(layout, other)}
  local same = 0
  for p = 1, nperm do
    if mine[p] == theirs[p] then same = same + 1 end
  end
  local j = same / nperm
  n2 = tonumber(n2) or 0
  local smaller = math.min(n, n2)
  local containment = 0
  if smaller >= cmin_n then containment = (j * (n + n2) / (1 + j)) / smaller end
  return j, containment
end

-- `again`: the article was in band lists before (a revision); drop its old entries first. A new
-- article is in none, so it pays only the push (this runs for every article enriched).
local function index_bands(again)
  for i = 2, #KEYS do
    if again then redis.call('LREM', KEYS[i], 0, aid) end
    -- LPUSH answers the length: trim only a list that outgrew its cap (most never do).
    if redis.call('LPUSH', KEYS[i], aid) > cap then redis.call('LTRIM', KEYS[i], 0, cap - 1) end
    redis.call('EXPIRE', KEYS[i], ttl)
  end
end

local existing = redis.call('HGET', KEYS[1], 'cluster')
if existing then
  -- Seen before (a redelivery, or a revision of the article): it never joins another story on its
  -- own. A copy of another article's story stays in it while it is still a copy of it; revised
  -- beyond that, it becomes a story of its own.
  local status = 'existing'
  if existing ~= aid then
    local founder = redis.call('HMGET', docprefix .. existing, 'sig', 'n')
    local j, containment = likeness(founder[1], founder[2])
    if j and j < jmin and containment < cmin then existing, status = aid, 'left' end
  end
  local old_sig = redis.call('HGET', KEYS[1], 'sig')
  redis.call('HSET', KEYS[1], 'cluster', existing, 'sig', sig, 'n', n)
  redis.call('EXPIRE', KEYS[1], ttl)
  if old_sig ~= sig then index_bands(true) end  -- later copies of the new text find it
  return {existing, status, '1'}
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
  local j, containment = likeness(doc[2], doc[3])
  if doc[1] and j and (j >= jmin or containment >= cmin) and j + containment > best_score then
    best, best_score = doc[1], j + containment
  end
end

local cluster = best or aid
redis.call('HSET', KEYS[1], 'cluster', cluster, 'sig', sig, 'n', n)
redis.call('EXPIRE', KEYS[1], ttl)
index_bands(false)
if best then return {cluster, 'joined', tostring(best_score)} end
return {cluster, 'new', '0'}
"""


_SCRIPT_SHA = hashlib.sha1(_SCRIPT.encode("utf-8")).hexdigest()


def _run_script(r: redis.Redis, numkeys: int, *args: Any) -> Any:
    """The script by its SHA (EVALSHA): Redis keeps it compiled, and its 4 kB do not travel with
    every article; sent whole once per server (after a restart or SCRIPT FLUSH)."""
    try:
        return r.evalsha(_SCRIPT_SHA, numkeys, *args)
    except redis.exceptions.NoScriptError:
        return r.eval(_SCRIPT, numkeys, *args)


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def assign_cluster(r: redis.Redis, prefix: str, article_id: str, text: str) -> str:
    """The cluster id of the article: the id of the first article of its story seen by any worker.

    Idempotent, and revisions never move an article into another story: an article id already
    assigned keeps its cluster while its text is still a copy of the story's first article (else it
    becomes a story of its own), whatever other stories its new text resembles.
    """
    return assign_cluster_detail(r, prefix, article_id, text)[0]


def assign_cluster_detail(r: redis.Redis, prefix: str, article_id: str, text: str) -> tuple[str, str, float]:
    """(cluster id, 'new' | 'joined' | 'existing' | 'left', match score) — the score is for tests and tuning."""
    hashes = shingle_hashes(text)
    sig = signature(hashes)
    base = f"{prefix}cluster:"
    # No shingles: nothing to compare, and empty signatures are all equal, so no band keys.
    bands = [f"{base}band:{key}" for key in band_keys(sig)] if hashes.size else []
    result = cast(
        list[Any],
        _run_script(
            r,
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
        ),
    )
    return _decode(result[0]), _decode(result[1]), float(_decode(result[2]))


class ClusterStore:
    """Near-duplicate signatures and their LSH bands in Redis (keys `cluster:*`, see above)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._r = client
        self._p = prefix

    def assign(self, article_id: str, text: str) -> str:
        return assign_cluster(self._r, self._p, article_id, text)

    def copy_assignment(self, old: str, new: str, dry_run: bool = False) -> bool:
        """Give article id `new` the cluster and signature kept for `old` (`newsflow migrate`), so the
        article keeps its story under its new id. `old` stays: band lists still name it, and it
        expires with them. False when `old` has none or `new` has one already."""
        src, dst = f"{self._p}cluster:doc:{old}", f"{self._p}cluster:doc:{new}"
        if old == new or self._r.exists(dst):
            return False
        if dry_run:
            return bool(self._r.exists(src))
        return bool(self._r.copy(src, dst))
