"""Exact and near-duplicate detection.

- Exact: a document (or paragraph) is a duplicate when its text, with whitespace runs collapsed, hashes
  (BLAKE2b, 128 bits) to the same value as an earlier one.
- Near: MinHash (Broder 1997, "On the resemblance and containment of documents") estimates the Jaccard
  similarity of the sets of character n-gram shingles of two texts; locality-sensitive hashing (LSH) over
  MinHash bands finds the pairs above a threshold without comparing all pairs (as in the deduplication of
  Lee et al. 2022, https://arxiv.org/abs/2107.06499). Character shingles work for any script, Chinese
  included (no word segmentation needed). The bands are `datasketch.MinHashLSH`'s, the index a set of
64-bit band keys (same candidates, a fraction of the memory); the MinHash values are
  computed here with numpy over all shingles of a text at once (the same affine permutations
  `h(x) = a*x + b mod 2**32` as `datasketch.MinHash(scheme="affine32")`, but without a Python call per
  shingle), which makes it much faster than `MinHash.update` on a 2-core laptop.

In both cases the first occurrence is kept and later ones are marked as duplicates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

_MAX_HASH32 = np.uint32((1 << 32) - 1)
_CHUNK = 16384  # shingles per block when taking minima (bounds memory at CHUNK * num_perm * 4 bytes)


def _canonical(text: str) -> str:
    """Lower-case with whitespace runs collapsed to one space: the form duplicates are compared in."""
    return " ".join(text.lower().split())


def exact_key(text: str) -> bytes:
    """The 128-bit BLAKE2b hash of `text` with whitespace runs collapsed (case kept): equal keys = exact duplicates."""
    return hashlib.blake2b(" ".join(text.split()).encode("utf-8"), digest_size=16).digest()


def exact_duplicates(texts: Sequence[str]) -> list[bool]:
    """For each text, whether an earlier text has the same `exact_key`."""
    seen: set[bytes] = set()
    dup = []
    for t in texts:
        key = exact_key(t)
        dup.append(key in seen)
        seen.add(key)
    return dup


def shingle_hashes(text: str, ngram: int) -> np.ndarray:
    """32-bit hashes (uint32) of the distinct character n-grams of the canonical form of `text`.

    A polynomial rolling hash over Unicode code points, computed for all windows at once with numpy.
    Texts shorter than `ngram` give one shingle (the whole text).
    """
    key = _canonical(text)
    cps = np.frombuffer(key.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    n = min(ngram, len(cps))
    if n == 0:
        return np.zeros(1, dtype=np.uint32)
    windows = len(cps) - n + 1
    h = np.zeros(windows, dtype=np.uint64)
    base = np.uint64(1_000_003)
    with np.errstate(over="ignore"):  # arithmetic modulo 2**64 is intended
        for j in range(n):
            h = h * base + cps[j : j + windows]
        h ^= h >> np.uint64(29)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(32)
    return np.unique((h >> np.uint64(16)).astype(np.uint32))


class NearDuplicateIndex:
    """Streaming near-duplicate detector: `is_duplicate(text)` checks against, then adds to, the index.

    Args:
        threshold: Jaccard similarity of the shingle sets above which two texts are near-duplicates.
        num_perm: number of MinHash permutations (more = more accurate, slower).
        ngram: shingle length in characters.
        seed: seed of the MinHash permutations.
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, ngram: int = 5, seed: int = 1) -> None:
        from datasketch import MinHash, MinHashLSH  # imported here: only needed when near-dedup is on

        if not 0.0 < threshold < 1.0:
            raise ValueError(f"near-dedup threshold must be in (0, 1), got {threshold}")
        if ngram < 1 or num_perm < 2:
            raise ValueError(f"near-dedup needs ngram >= 1 and num_perm >= 2, got {ngram} and {num_perm}")
        self._MinHash = MinHash
        self.template = MinHash(num_perm=num_perm, seed=seed, scheme="affine32")
        self.a, self.b = (np.asarray(p, dtype=np.uint32) for p in self.template.permutations)
        # datasketch's choice of bands (b bands of r rows) for this threshold; its index itself is not kept
        self.bands: list[tuple[int, int]] = list(MinHashLSH(threshold=threshold, num_perm=num_perm).hashranges)
        self.num_perm, self.ngram, self.seed = num_perm, ngram, seed
        self._buckets: set[int] = set()

    def minhash_values(self, text: str) -> np.ndarray:
        """The MinHash signature of `text`'s shingles: (num_perm,) uint32."""
        hv = shingle_hashes(text, self.ngram)
        mins = np.full(self.num_perm, _MAX_HASH32, dtype=np.uint32)
        with np.errstate(over="ignore"):  # uint32 arithmetic wraps: that is the mod 2**32
            for i in range(0, len(hv), _CHUNK):
                block = hv[i : i + _CHUNK, None]  # (S, 1)
                phv = block * self.a + self.b  # (S, num_perm)
                np.minimum(mins, phv.min(axis=0), out=mins)
        return mins

    def minhash(self, text: str):
        """The `datasketch.MinHash` of `text`'s shingles."""
        return self._MinHash(
            num_perm=self.num_perm,
            seed=self.seed,
            hashvalues=self.minhash_values(text),
            permutations=self.template.permutations,
            scheme="affine32",
        )

    def _band_keys(self, mins: np.ndarray) -> list[int]:
        """One 64-bit key per LSH band: the band's index and its rows, hashed (BLAKE2b)."""
        return [
            int.from_bytes(hashlib.blake2b(i.to_bytes(4, "little") + mins[lo:hi].tobytes(), digest_size=8).digest())
            for i, (lo, hi) in enumerate(self.bands)
        ]

    def is_duplicate(self, text: str) -> bool:
        """True if `text` is a near-duplicate of a text seen before; otherwise remember it and return False.

        A candidate is a text sharing all rows of at least one band (`datasketch.MinHashLSH.query` returns
        the same candidates); the index keeps only one 64-bit key per band of every kept text (a few hundred
        bytes each), where `MinHashLSH` keeps a set and a byte string per band.
        """
        keys = self._band_keys(self.minhash_values(text))
        if any(k in self._buckets for k in keys):
            return True
        self._buckets.update(keys)
        return False


def near_duplicates(
    texts: Sequence[str], threshold: float = 0.8, num_perm: int = 128, ngram: int = 5, seed: int = 1
) -> list[bool]:
    """For each text, whether it is a near-duplicate of an earlier (kept) text."""
    index = NearDuplicateIndex(threshold, num_perm, ngram, seed)
    return [index.is_duplicate(t) for t in texts]
