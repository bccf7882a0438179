"""One implementation of one workload (or one limit measurement) in a fresh process; prints one RESULT line of JSON.

    python -m benchmarks._worker '{"kind": "workload", "name": "ig.digits", "impl": "ours", ...}'
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time

MIN_RUN_SECONDS = 0.1


def main(argv: list[str]) -> int:
    job = json.loads(argv[0])
    from ._setup import pin_threads, synchronise

    pin_threads(job["threads"])
    if job["kind"] == "limit":
        from ._limits import measure

        print("RESULT " + json.dumps(measure(job["model"], job["backend"], job["device"], job["threads"])))
        return 0
    if job["kind"] == "full-peers":
        from ._full import peers

        print("RESULT " + json.dumps(peers(job)))
        return 0

    import numpy as np

    from ._workloads import BY_NAME

    workload = BY_NAME[job["name"]]
    spec = {"model": workload.model, "backend": job["backend"], "rows": job["rows"], "device": job["device"],
            "threads": job["threads"], "params": workload.params}
    go = workload.build(job["impl"], spec)
    repeats = job["repeats"]
    calls = 1  # per timed run
    if workload.max_repeats:
        repeats = min(repeats, workload.max_repeats)
    else:
        # Warm-up: imports inside the implementation, TorchScript profiling runs, caches. A workload of a few
        # milliseconds is timed as a loop of calls lasting about MIN_RUN_SECONDS, as timeit does, so it is
        # measured warm, like the limit's tight loop, rather than as one call into cold caches.
        synchronise(job["device"])
        start = time.perf_counter()
        go()
        synchronise(job["device"])
        once = time.perf_counter() - start
        if once < MIN_RUN_SECONDS:
            calls = min(1000, math.ceil(MIN_RUN_SECONDS / max(once, 1e-6)))
            for _ in range(calls):
                go()
    seconds = []
    result = None
    for _ in range(repeats):
        synchronise(job["device"])
        start = time.perf_counter()
        for _ in range(calls):
            result = go()
        synchronise(job["device"])
        seconds.append((time.perf_counter() - start) / calls)
    if result.get("array") is not None and job.get("array_path"):
        np.save(job["array_path"], np.asarray(result["array"], dtype=np.float64))
    out = {
        "seconds": seconds,
        "median": statistics.median(seconds),
        # A forward+backward row also counts as a forward row in the counters; report the two kinds apart.
        "forward_rows": int(result["forward_rows"]) - int(result["backward_rows"]),
        "backward_rows": int(result["backward_rows"]),
        "required": result.get("required"),
        "values": result.get("values", {}),
        "calls_per_run": calls,
    }
    print("RESULT " + json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
