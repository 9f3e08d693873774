"""Mutation fuzzing of the command line: corrupt a valid exported model in the ways
broken exports, hand edits and truncated downloads do, feed it to `bnnforge build`, and
check the promise every failure keeps: exactly one `bnnforge: error:` line on stderr,
exit status 2, no Python traceback, and nothing half written (no output directory; an
internal error may leave only its `<out>.error.log`).

Used by `benchmarks/mutation_fuzz.py` (many cases, printed counts) and by the tests (a
sample on fixed seeds).
"""
from __future__ import annotations

import contextlib
import io
import random
import signal
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

MUTATIONS = ("drop_initializer", "corrupt_shape", "corrupt_dtype", "unknown_op", "swap_inputs",
             "wrong_attribute", "drop_attribute", "drop_node", "rename_tensor", "truncate", "flip_bytes",
             "corrupt_initializer_values", "duplicate_output")


def mutate(model_bytes: bytes, kind: str, rng: random.Random) -> bytes:
    """One mutation of the serialized model (a valid ONNX file); a draw that happens to
    change nothing (a dimension set to its own value, ...) is drawn again."""
    for _ in range(20):
        out = _mutate_once(model_bytes, kind, rng)
        if out != model_bytes:
            return out
    return out


def _mutate_once(model_bytes: bytes, kind: str, rng: random.Random) -> bytes:
    if kind == "truncate":
        return model_bytes[: rng.randrange(0, len(model_bytes))]
    if kind == "flip_bytes":
        b = bytearray(model_bytes)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    m = onnx.load_from_string(model_bytes)
    g = m.graph
    nodes = list(g.node)
    node = rng.choice(nodes)
    if kind == "drop_initializer" and g.initializer:
        del g.initializer[rng.randrange(len(g.initializer))]
    elif kind == "corrupt_shape":
        choices = [t for t in list(g.input) + list(g.output) + list(g.value_info) if t.type.tensor_type.shape.dim]
        if choices and rng.random() < 0.5:
            dims = rng.choice(choices).type.tensor_type.shape.dim
            dims[rng.randrange(len(dims))].dim_value = rng.choice([0, 2, 3, 7, 1000, 1 << 20])
        elif g.initializer:
            t = rng.choice(list(g.initializer))
            arr = numpy_helper.to_array(t)
            flat = arr.reshape(-1)
            new = flat[: max(1, len(flat) - rng.randint(1, 5))] if rng.random() < 0.5 else np.concatenate([flat, flat[:3]])
            t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(new), t.name))
    elif kind == "corrupt_dtype":
        if g.initializer and rng.random() < 0.5:
            t = rng.choice(list(g.initializer))
            arr = numpy_helper.to_array(t)
            dt = rng.choice([np.int8, np.int64, np.float16, np.bool_, np.uint8])
            t.CopyFrom(numpy_helper.from_array(arr.astype(dt), t.name))
        else:
            rng.choice(list(g.input) + list(g.output)).type.tensor_type.elem_type = rng.choice(
                [onnx.TensorProto.INT8, onnx.TensorProto.STRING, onnx.TensorProto.BOOL, onnx.TensorProto.DOUBLE])
    elif kind == "unknown_op":
        node.op_type = rng.choice(["FancyOp", "Tanh", "Softmax", "Conv", "Gemm", "Quant", "Add"])
    elif kind == "swap_inputs" and len(node.input) > 1:
        i, j = rng.sample(range(len(node.input)), 2)
        node.input[i], node.input[j] = node.input[j], node.input[i]
    elif kind == "wrong_attribute" and node.attribute:
        a = rng.choice(list(node.attribute))
        if a.type == onnx.AttributeProto.INT:
            a.i = rng.choice([-1, 0, 2, 7, 1 << 31])
        elif a.type == onnx.AttributeProto.FLOAT:
            a.f = rng.choice([-1.0, 0.0, float("nan"), 1e30])
        elif a.type == onnx.AttributeProto.INTS and a.ints:
            a.ints[rng.randrange(len(a.ints))] = rng.choice([-3, 0, 5, 1 << 31])
        elif a.type == onnx.AttributeProto.STRING:
            a.s = rng.choice([b"", b"WEIRD", b"\xff\xfe"])
        else:
            node.attribute.append(onnx.helper.make_attribute("bogus", 3))
    elif kind == "drop_attribute" and node.attribute:
        del node.attribute[rng.randrange(len(node.attribute))]
    elif kind == "drop_node":
        g.node.remove(node)
    elif kind == "rename_tensor" and node.input:
        node.input[rng.randrange(len(node.input))] = "no_such_tensor"
    elif kind == "corrupt_initializer_values" and g.initializer:
        t = rng.choice(list(g.initializer))
        arr = numpy_helper.to_array(t).copy()
        if arr.size and arr.dtype.kind == "f":
            flat = arr.reshape(-1)
            flat[rng.randrange(flat.size)] = rng.choice([np.nan, np.inf, -np.inf, 1e30, 0.37, -5.0])
            t.CopyFrom(numpy_helper.from_array(arr, t.name))
    elif kind == "duplicate_output" and len(nodes) > 1:
        a, b = rng.sample(nodes, 2)
        b.output[0] = a.output[0]
    return m.SerializeToString()


@dataclass
class Outcome:
    kind: str
    seed: int
    rc: int
    stderr: str
    built: bool = False
    problems: list = field(default_factory=list)


class _Timeout(Exception):
    pass


def run_case(base: bytes, kind: str, seed: int, work: Path, steps: str, timeout_s: int = 120) -> Outcome:
    """Mutate, build through the CLI in this process, and check the promise."""
    from bnnforge.cli import main

    rng = random.Random(seed)
    case = work / f"case{seed}"
    case.mkdir(parents=True)
    model = case / "model.onnx"
    model.write_bytes(mutate(base, kind, rng))
    out = case / "build"
    err = io.StringIO()

    def on_alarm(signum, frame):
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(timeout_s)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = main(["build", "--model", str(model), "--out", str(out), "--quiet", "--steps", steps])
    except _Timeout:
        rc = -1
    except BaseException as e:  # a traceback would have escaped main
        rc = -2
        err.write(f"ESCAPED {type(e).__name__}: {e}\n")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    o = Outcome(kind, seed, rc, err.getvalue())
    lines = [ln for ln in o.stderr.splitlines() if ln.strip()]
    if rc == 0:
        o.built = out.is_dir() and (out / "final_model.onnx").is_file()
        if not o.built:
            o.problems.append("exit 0 without a finished build")
    elif rc == -1:
        o.problems.append(f"no answer within {timeout_s} s")
    else:
        if rc != 2:
            o.problems.append(f"exit status {rc}")
        if len(lines) != 1 or not lines[0].startswith("bnnforge: error: "):
            o.problems.append(f"stderr is not one error line: {lines[:3]}")
        if "Traceback" in o.stderr:
            o.problems.append("traceback")
        leftovers = sorted(p.name for p in case.iterdir() if p.name not in ("model.onnx", "build.error.log"))
        if leftovers:
            o.problems.append(f"left behind: {leftovers}")
    return o
