"""Rewrites a QDQ model's quantized convolutions in the QOperator form: each
`DequantizeLinear(x) → Conv(DequantizeLinear(w), DequantizeLinear(b)) → QuantizeLinear` becomes
one standard `QLinearConv` (no contrib operators), every other node is kept. The measurement of
docs/performance.md ("tract and int8") uses it to find which int8 form tract runs fast; thrum
itself writes QDQ. Run with the venv-image interpreter of scripts/install-test-data.sh.

    python qdq_to_qlinearconv.py IN.onnx OUT.onnx
"""
import collections
import sys

import onnx
from onnx import helper


def main():
    model = onnx.load(sys.argv[1])
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers = collections.defaultdict(list)
    for n in graph.node:
        for i in n.input:
            consumers[i].append(n)
    dropped, replaced = set(), {}
    for n in graph.node:
        if n.op_type != "Conv":
            continue
        inputs = [producer.get(i) for i in n.input]
        if not all(p is not None and p.op_type == "DequantizeLinear" for p in inputs):
            continue
        after = consumers[n.output[0]]
        if len(after) != 1 or after[0].op_type != "QuantizeLinear":
            continue
        q, dx, dw = after[0], inputs[0], inputs[1]
        args = [*dx.input[:3], *dw.input[:3], q.input[1], q.input[2]]
        if len(inputs) > 2:
            args.append(inputs[2].input[0])  # the int32 bias at x scale × w scale
        conv = helper.make_node("QLinearConv", args, [q.output[0]], name=n.name + "_qlinear")
        conv.attribute.extend(n.attribute)
        replaced[id(n)] = conv
        dropped.add(id(q))
        dropped.update(id(d) for d in inputs[1:])
    nodes = [replaced.get(id(n), n) for n in graph.node if id(n) not in dropped]
    used = collections.Counter(i for n in nodes for i in n.input)
    used.update(o.name for o in graph.output)
    nodes = [
        n for n in nodes
        if not (n.op_type == "DequantizeLinear" and all(used[o] == 0 for o in n.output))
    ]
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, sys.argv[2])
    print(dict(collections.Counter(n.op_type for n in graph.node)))


if __name__ == "__main__":
    main()
