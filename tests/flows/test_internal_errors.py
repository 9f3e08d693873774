"""An unexpected exception inside a build step or a command is one line that says it is an
internal error, names the step and the ONNX node the step was at, and points to a log
holding the traceback; nothing of the build is written."""
import re

import bnnforge
from bnnforge.cli import main
from bnnforge.finn_flows import builder
from tests.flows.helpers import HW_STEPS, random_model


def test_step_crash_is_one_line_with_node_and_log(tmp_path, capsys, monkeypatch):
    onnx_path = bnnforge.export(random_model("tfc", "unipolar"), tmp_path / "m.onnx")
    real = builder.step_function

    def crashing(name):
        if name != "streamline":
            return real(name)

        def step(model, cfg):
            for node in model.graph.node:  # the failing node is a local of the crashing frame
                if node.op_type == "MatMul":
                    raise IndexError("list index out of range")
        return step

    monkeypatch.setattr(builder, "step_function", crashing)
    out = tmp_path / "build"
    assert main(["build", "--model", str(onnx_path), "--out", str(out), "--quiet",
                 "--steps", ",".join(HW_STEPS)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    m = re.fullmatch(r"bnnforge: error: internal error in step streamline at node '([^']+)' \(MatMul\): "
                     r"IndexError: list index out of range; traceback in (\S+)", err[0])
    assert m, err[0]
    log = tmp_path / "build.error.log"
    assert m.group(2) == str(log) and "Traceback (most recent call last)" in log.read_text()
    assert re.fullmatch(r"MatMul_\d+", m.group(1))  # the node as the step saw it (tidy_up names nodes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build.error.log", "m.onnx"]

    monkeypatch.setattr(builder, "step_function", real)  # the next good build clears the log
    assert main(["build", "--model", str(onnx_path), "--out", str(out), "--quiet",
                 "--steps", ",".join(HW_STEPS)]) == 0
    assert not log.exists() and (out / "final_model.onnx").is_file()


def test_command_crash_is_one_line_with_log(tmp_path, capsys, monkeypatch):
    import bnnforge.cli as cli

    monkeypatch.setenv("BNNFORGE_CACHE_DIR", str(tmp_path / "cache"))

    def boom(args):
        raise KeyError("surprise")

    monkeypatch.setattr(cli, "cmd_eval", boom)
    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_eval(parser(), boom))
    assert main(["eval", "--checkpoint", "x.pt"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bnnforge: error: internal error in bnnforge eval: KeyError"), err
    (log,) = (tmp_path / "cache" / "logs").glob("error-*.log")
    assert err[0].endswith(f"traceback in {log}") and "Traceback" in log.read_text()


def _with_eval(ap, fn):
    ap._subparsers._group_actions[0].choices["eval"].set_defaults(fn=fn)
    return ap
