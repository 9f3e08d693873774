"""insert_stream_forks: a stream read by several nodes gets a StreamFork right after its
producer, one output per reader, so that every hardware stream has one consumer."""
from __future__ import annotations

from onnx import helper

from bnnforge.errors import BnnforgeError
from bnnforge.hw.hwgraph import DOMAIN


def insert_stream_forks(nodes: list, graph_outputs: set) -> list:
    """A stream read by several nodes gets a StreamFork (hw/rtl/stream_fork.v) right after
    its producer, one output per reader: a hardware stream has one consumer."""
    readers = {}
    for n in nodes:
        for t in n.input[:1] if n.op_type != "StreamAdd" else n.input[:2]:
            readers.setdefault(t, []).append(n)
    out, k = [], 0
    for n in nodes:
        out.append(n)
        for t in n.output:
            rs = readers.get(t, [])
            if len(rs) + (t in graph_outputs) < 2:
                continue
            if t in graph_outputs:
                raise BnnforgeError(f"tensor {t!r}: the graph output is also read inside the graph")
            outs = []
            for r_i, r in enumerate(rs):
                name = f"{t}_fork{r_i}"
                for p, inp in enumerate(r.input):
                    if inp == t:
                        r.input[p] = name
                        break
                outs.append(name)
            out.append(helper.make_node("StreamFork", [t], outs, name=f"StreamFork_{k}", domain=DOMAIN,
                                        N=len(outs), PE=1))
            k += 1
    return out
