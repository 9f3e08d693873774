"""Safe names for generated Verilog: identifiers and comments built from user input.

Nothing from an ONNX file reaches an identifier or a file name unsanitized: instances
and files are named from indices, the top from a sanitized user-given name, and ONNX node
names appear only in comments after comment_safe.
"""
from __future__ import annotations

import re

VERILOG_KEYWORDS = set("""
always and assign automatic begin buf bufif0 bufif1 case casex casez cell cmos config deassign default
defparam design disable edge else end endcase endconfig endfunction endgenerate endmodule endprimitive
endspecify endtable endtask event for force forever fork function generate genvar highz0 highz1 if
ifnone incdir include initial inout input instance integer join large liblist library localparam
macromodule medium module nand negedge nmos nor noshowcancelled not notif0 notif1 or output parameter
pmos posedge primitive pull0 pull1 pulldown pullup pulsestyle_ondetect pulsestyle_onevent rcmos real
realtime reg release repeat rnmos rpmos rtran rtranif0 rtranif1 scalared showcancelled signed small
specify specparam strong0 strong1 supply0 supply1 table task time tran tranif0 tranif1 tri tri0 tri1
triand trior trireg unsigned use uwire vectored wait wand weak0 weak1 while wire wor xnor xor
logic bit byte int shortint longint struct union enum typedef class interface program package
""".split())


def sanitize_identifier(name: str, fallback: str = "bnn") -> str:
    """A safe Verilog-2005 identifier: [A-Za-z_][A-Za-z0-9_]*, no keyword, <= 48 chars."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", str(name).encode("ascii", "replace").decode())
    s = re.sub(r"_+", "_", s).strip("_")[:48]
    if not s:
        s = fallback
    if not (s[0].isalpha() or s[0] == "_"):
        s = f"n_{s}"
    if s.lower() in VERILOG_KEYWORDS:
        s = f"{s}_m"
    return s


def comment_safe(text: str) -> str:
    """Text that cannot end a comment or a line early: printable ASCII only."""
    s = str(text).encode("ascii", "replace").decode()
    return re.sub(r"[^ -~]|\*/|/\*", "?", s)[:80]
