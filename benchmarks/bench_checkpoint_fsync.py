# Copyright 2026 the neobert-hf authors. Licensed under the Apache License, Version 2.0.
"""What flushing a checkpoint folder to the device costs before it is published
(`neobert_hf.checkpoints.tree.sync_folder`, called by `publish`), next to writing the folder, which is all the stock
`Trainer` save does.

```bash
python benchmarks/bench_checkpoint_fsync.py                  # a NeoBERT-base-like folder: 250 MB weights, 500 MB optimizer
python benchmarks/bench_checkpoint_fsync.py --scale 0.1      # a tenth of that
```

Each repeat writes the files (random bytes, generated beforehand so the write time is the write alone), then fsyncs
them; the table gives both and their ratio. The folder is in `--dir` (default: the system temp folder).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

from neobert_hf.checkpoints.tree import sync_folder


FILES_MB = {"model.safetensors": 250, "optimizer.pt": 500, "scheduler.pt": 1, "trainer_state.json": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every file size by this")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to write the folders (default: the temp folder)")
    args = parser.parse_args()

    payload = {name: os.urandom(max(1, int(mb * args.scale * 1024 * 1024))) for name, mb in FILES_MB.items()}
    total_mb = sum(len(data) for data in payload.values()) / 2**20
    writes, syncs = [], []
    for _ in range(args.repeats):
        folder = tempfile.mkdtemp(prefix="neobert_hf_bench_fsync_", dir=args.dir)
        try:
            start = time.perf_counter()
            for name, data in payload.items():
                with open(os.path.join(folder, name), "wb") as handle:
                    handle.write(data)
            written = time.perf_counter()
            sync_folder(folder)
            synced = time.perf_counter()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        writes.append(written - start)
        syncs.append(synced - written)
    write, sync = statistics.median(writes), statistics.median(syncs)
    print(f"folder: {total_mb:.0f} MB in {len(payload)} files; median of {args.repeats}")
    print("| stock save (write) | + fsync (publish) | fsync / write |")
    print("| ---: | ---: | ---: |")
    print(f"| {write:.2f} s | +{sync:.2f} s | {sync / write:.2f}x |")


if __name__ == "__main__":
    main()
