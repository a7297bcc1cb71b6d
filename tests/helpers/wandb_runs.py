"""Reading back what an offline W&B run recorded."""

import glob
import struct


def wandb_run_record(path: str):
    """The run record of an offline run's `.wandb` file (LevelDB-style log: 32 KiB blocks of records with a 7-byte
    header: CRC, length, type full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    position, block, pending = 7, 32768, b""  # after the ":W&B" file header
    while position + 7 <= len(data):
        if block - position % block < 7:
            position += block - position % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[position : position + 7])
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 0:
            break
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            if record.WhichOneof("record_type") == "run":
                return record.run
    raise AssertionError(f"no run record in {path}")


def offline_run(train, wandb_dir):
    """Run `train()` (configured for an offline W&B run written under `wandb_dir`), stop the W&B service so the run
    file is complete on disk, and return the run record it holds."""
    try:
        train()
    finally:
        import wandb

        wandb.finish()
        wandb.teardown()
    (run_file,) = glob.glob(str(wandb_dir / "wandb" / "offline-run-*" / "run-*.wandb"))
    return wandb_run_record(run_file)
