"""Time the duplicate search of `fer_utils.quality` on a FER file (hashing included, data loading not).

    python -m benchmarks.duplicate_search --data data/fer2013.csv

Prints one JSON object: how many images were searched; the seconds, wall clock and CPU, of the hashing alone, of
the search (pHash, the pair search within `quality.SEARCH_RADIUS` bits and the exact-duplicate grouping) and of
the whole audit (the blank and flatness flags too); and what they found. On FER2013's Training and PublicTest
rows the search should take under a minute on a 2-core CPU.
"""

from __future__ import annotations

import json
import time

import numpy as np

from benchmarks import data_parser
from fer_utils import data as fer_data
from fer_utils import quality


def timed(function, *args):
    """`function(*args)` and the seconds it took: wall clock and this process's CPU time (less when it waits for
    other jobs on the machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return result, {"wall": round(time.perf_counter() - wall, 2), "cpu": round(time.process_time() - cpu, 2)}


def main() -> None:
    """Load the data, then time the search and the audit and print what they found as JSON."""
    args = data_parser("duplicate_search", __doc__).parse_args()

    data = fer_data.load(args.data, verbose=False)
    images = np.concatenate([data.x[s] for s in fer_data.SPLITS])
    hashes, hash_seconds = timed(quality.phash, images)
    pairs, search_seconds = timed(quality.duplicate_search, images)
    found, audit_seconds = timed(quality.audit, data)
    near = found.pairs[found.pairs["near"]]
    print(json.dumps({
        "data": args.data, "images": len(images), "hash_seconds": hash_seconds,
        "search_seconds": search_seconds, "audit_seconds": audit_seconds,
        "pairs_within_search_radius": len(pairs), "search_radius": quality.SEARCH_RADIUS,
        "near_distance": quality.NEAR_DISTANCE, "identical_pairs": int(near["identical"].sum()),
        "near_pairs": int((~near["identical"]).sum()),
        "flags": found.flags["kind"].replace("", "none").value_counts().to_dict(),
        "within_training": quality.within(found, "train"),
        "twins": quality.twin_table(found).to_dict(orient="index"),
    }, indent=1))


if __name__ == "__main__":
    main()
