"""On the board: accuracy and throughput of the accelerator on a dataset file.

    python3 validate.py --bitfile bitfile/<name>.bit --dataset sample/sample.npz

Prints one JSON object; exit status 1 when any output differs from the expected
outputs stored in the dataset, 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pynq_driver import BnnOverlay, DriverInputError  # noqa: E402


def main(argv=None, io=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bitfile", default=None, help="bitstream (its .hwh next to it)")
    ap.add_argument("--layout", default=str(HERE / "accel.json"))
    ap.add_argument("--dataset", required=True, help=".npz with x (integer inputs), y and/or expected")
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--throughput", action="store_true", help="also run the FINN-style throughput test")
    a = ap.parse_args(argv)
    try:
        if io is None:
            if not a.bitfile:
                raise DriverInputError("--bitfile is required on the board")
            if not Path(a.bitfile).is_file():
                raise DriverInputError(f"{a.bitfile}: bitfile not found")
            ol = BnnOverlay.from_bitfile(a.bitfile, a.layout, batch_size=a.batch_size)
        else:
            ol = BnnOverlay(io, a.layout, batch_size=a.batch_size)
        res = ol.validate(a.dataset)
        res.pop("predictions")
        if a.throughput:
            res["throughput"] = ol.throughput_test()
    except DriverInputError as e:
        print(f"validate: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res, indent=2))
    return 1 if res.get("mismatches_vs_expected") else 0


if __name__ == "__main__":
    sys.exit(main())
