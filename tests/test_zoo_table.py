"""benchmarks/zoo.py merges each run into the saved table: a synthesis-only pass on one
design adds its Yosys columns without erasing what earlier runs measured."""
import importlib.util
import json
from pathlib import Path

spec = importlib.util.spec_from_file_location("zoo_bench", Path(__file__).resolve().parents[1] / "benchmarks" / "zoo.py")
zoo_bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(zoo_bench)


def test_merge_keeps_earlier_columns_and_takes_new_figures(tmp_path):
    saved = tmp_path / "zoo_finn.json"
    old = [{"model": "cnv_1w1a", "exporter": "dynamo", "status": "built", "finn_lut": 24115, "build_s": 9.0},
           {"model": "tfc_1w1a", "exporter": "dynamo", "status": "built", "finn_lut": 9738, "yosys_lut": 1}]
    saved.write_text(json.dumps({"commands": ["benchmarks/zoo.py --no-rtl --finn-src FINN_SRC"], "rows": old}))
    new = [{"model": "tfc_1w1a", "exporter": "dynamo", "status": "built", "yosys_lut": 6996, "yosys_ff": 900,
            "bram18": 0, "build_s": 2.5}]
    commands, rows = zoo_bench.merge_saved(saved, new)
    assert commands == ["benchmarks/zoo.py --no-rtl --finn-src FINN_SRC"]
    assert [r["model"] for r in rows] == ["tfc_1w1a", "cnv_1w1a"]   # the zoo's order, not the file's
    assert rows[0] == {"model": "tfc_1w1a", "exporter": "dynamo", "status": "built", "finn_lut": 9738,
                       "yosys_lut": 6996, "yosys_ff": 900, "bram18": 0, "build_s": 2.5}
    assert rows[1] == old[0]
    table = zoo_bench.render(rows).splitlines()
    assert table[0] == "| model | exporter | build | build s | Yosys LUT | Yosys FF | Yosys BRAM18 | FINN est. LUT (MVAU) |"
    assert table[3] == "| cnv_1w1a | dynamo | built | 9.0 |  |  |  | 24115 |"


def test_merge_reads_a_table_saved_before_commands_were_kept(tmp_path):
    saved = tmp_path / "zoo.json"
    saved.write_text(json.dumps([{"model": "sfc_1w1a", "exporter": "torchscript", "rtl": "0 of 100"}]))
    commands, rows = zoo_bench.merge_saved(saved, [{"model": "sfc_1w1a", "exporter": "dynamo", "rtl": "0 of 100"}])
    assert commands == [] and [r["exporter"] for r in rows] == ["dynamo", "torchscript"]
    assert zoo_bench.merge_saved(tmp_path / "missing.json", []) == ([], [])
