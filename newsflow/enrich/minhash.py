"""MinHash signatures of word shingles, and their LSH band keys.

Word 4-shingles: long enough that two different stories on one topic share almost none, short enough
that a copy edited here and there keeps most of them. Hashing is vectorised with numpy (~1 ms for a
long article); every constant is fixed so that all workers on all machines compute the same signature.
"""

from __future__ import annotations

import functools
import re
import zlib

import numpy as np
import numpy.typing as npt

SHINGLE_WORDS = 4
# Only a text's first 100,000 characters are shingled (~16,000 words; the longest body in our 900-page
# samples has 51,000 characters): a 5 MB body would otherwise cost ~1.4 GB for `signature`. Like the
# seed, changing it changes the signature of longer texts.
MAX_TEXT_CHARS = 100_000
# Shingle hashes per step of `signature`: its memory is CHUNK x NUM_PERM x 8 bytes (~4 MB) at most.
_CHUNK = 4096
NUM_PERM = 120
BAND_ROWS = 3  # 40 bands of 3 rows: a pair with Jaccard 0.4 shares a band with p≈0.93, one with 0.1 with p≈0.04
NUM_BANDS = NUM_PERM // BAND_ROWS
_SEED = 20240605  # changing it orphans every stored signature: keep it
_WORD = re.compile(r"\w+", re.UNICODE)
_MASK32 = np.uint64(0xFFFFFFFF)

U64 = npt.NDArray[np.uint64]


@functools.cache
def _permutations() -> tuple[U64, U64]:
    """Multiply-shift hash parameters (a odd, b any), fixed by the seed."""
    rng = np.random.default_rng(_SEED)
    a = rng.integers(1, 2**63, size=NUM_PERM, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, size=NUM_PERM, dtype=np.uint64)
    return a, b


def shingle_hashes(text: str) -> U64:
    """Distinct 64-bit hashes of the lower-cased word shingles of the text's first MAX_TEXT_CHARS
    characters (empty for an empty text)."""
    words = _WORD.findall(text[:MAX_TEXT_CHARS].lower())
    if not words:
        return np.zeros(0, dtype=np.uint64)
    word_hashes = np.fromiter((zlib.crc32(w.encode()) for w in words), dtype=np.uint64, count=len(words))
    k = min(SHINGLE_WORDS, len(words))
    n = len(words) - k + 1
    combined = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):  # wrap-around multiplication is the point
        for j in range(k):
            combined = combined * np.uint64(0x100000001B3) + word_hashes[j : j + n]
    return np.unique(combined)


def signature(hashes: U64) -> npt.NDArray[np.uint32]:
    """NUM_PERM minimum hash values; all 0xFFFFFFFF for no shingles."""
    if hashes.size == 0:
        return np.full(NUM_PERM, 0xFFFFFFFF, dtype=np.uint32)
    a, b = _permutations()
    lowest = np.full(NUM_PERM, np.iinfo(np.uint64).max, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for start in range(0, hashes.size, _CHUNK):
            chunk = hashes[start : start + _CHUNK]
            values = (chunk[:, None] * a[None, :] + b[None, :]) >> np.uint64(32)
            np.minimum(lowest, values.min(axis=0), out=lowest)
    minima: npt.NDArray[np.uint32] = (lowest & _MASK32).astype(np.uint32)
    return minima


def band_keys(sig: npt.NDArray[np.uint32]) -> list[str]:
    """One key per band: band index and a hash of its rows."""
    raw = sig.astype("<u4").tobytes()
    width = BAND_ROWS * 4
    return [f"{i}:{zlib.crc32(raw[i * width : (i + 1) * width]):08x}" for i in range(NUM_BANDS)]
