"""What the compressed memory buys: reconstruction bits per token by position in the song, for
several runs side by side (e.g. the same preset trained for the same CPU minutes with and
without ``--no-compression``), each song read from its start with the memory carried
(``mtvae evaluate --by-position``'s measure, ``evaluate.likelihood_by_position``).

    .venv/bin/python bench/memory_position.py runs/cmp_compact runs/cmp_nocomp \\
        --data data/ship --genre pop --length 4096 --json bench/results/memory_position.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mtvae import MusicVAE
from mtvae.data import DataDir
from mtvae.evaluate import likelihood_by_position


def _steps(run: str) -> int | None:
    summary = Path(run) / "summary.json"
    return json.loads(summary.read_text()).get("steps") if summary.is_file() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", action="append", help="default: test and valid")
    ap.add_argument("--genre", help="only songs of this genre (the long ones: pop)")
    ap.add_argument("--length", type=int, default=4096)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    data = DataDir(a.data)
    out = {"data": str(data), "genre": a.genre, "length": a.length, "runs": {}}
    for run in a.runs:
        m = MusicVAE.load(run)
        c = m.config.model
        per = {}
        for split in a.split or ["test", "valid"]:
            store = data.split(split)
            songs = None
            if a.genre:
                songs = np.flatnonzero(np.asarray(store.genre) == data.genres.index(a.genre)).tolist()
            per[split] = likelihood_by_position(m, data, split, a.length, songs)
        bands = []
        for k, b in enumerate(per[next(iter(per))]["bands"]):
            n = sum(p["bands"][k]["tokens"] for p in per.values())
            bits = sum((p["bands"][k]["bits_per_token"] or 0) * p["bands"][k]["tokens"]
                       for p in per.values())
            bands.append({"from": b["from"], "to": b["to"], "tokens": n,
                          "bits_per_token": bits / n if n else None})
        out["runs"][run] = {"compression": c.use_compression, "memory": c.use_memory,
                            "mem_len": c.mem_len, "cmem_len": c.cmem_len,
                            "cmem_ratio": c.cmem_ratio, "seg_len": c.seg_len,
                            "steps": _steps(run),
                            "songs": sum(p["songs"] for p in per.values()), "bands": bands}
    runs = list(out["runs"])
    print("| position (tokens) | tokens | " + " | ".join(runs) + " |")
    print("|---|---:|" + "---:|" * len(runs))
    first = out["runs"][runs[0]]["bands"]
    for k, b in enumerate(first):
        if not b["tokens"]:
            continue
        cells = [f"{out['runs'][r]['bands'][k]['bits_per_token']:.3f}" for r in runs]
        print(f"| {b['from']}–{b['to']} | {b['tokens']:,} | " + " | ".join(cells) + " |")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = a.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=2))
        tmp.replace(a.json)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
