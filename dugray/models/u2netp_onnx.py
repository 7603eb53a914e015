"""U^2-Netp's weights from rembg's ONNX file into :class:`~dugray.models.u2netp_body.U2NetP`.

The file's initializers are anonymous (batch norm folded in by the exporter) except the
side outputs, so the mapping is structural: the graph's Conv nodes, in the graph's order,
onto the port's convolutions in forward order. Every conv is checked (weight and bias
shapes, dilation, padding) and the named side outputs are checked by name; any mismatch is
a :class:`U2NetpFileError` saying which conv, so a different file can never load silently.

Reading the file needs the ``onnx`` package (``pip install 'dugray[train]'``); nothing at
serving time does: a trained model's checkpoint holds the converted weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .u2netp_body import U2NetP

CONV_COUNT = 119
SIDE_NAMES = [f"side{i}" for i in range(1, 7)] + ["outconv"]


class U2NetpFileError(ValueError):
    """The ONNX file is not U^2-Netp as rembg ships it (a one-line reason)."""


def conv_order(net: U2NetP) -> list[nn.Conv2d]:
    """The port's convolutions in the order a forward pass runs them (traced, not assumed)."""
    order: list[nn.Conv2d] = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, _: order.append(mod)) for m in net.modules() if isinstance(m, nn.Conv2d)
    ]
    try:
        with torch.no_grad():
            net(torch.zeros(1, 3 + net.extra_in, 32, 32))
    finally:
        for h in hooks:
            h.remove()
    return order


def read_onnx_convs(path) -> list[dict]:
    """Per Conv node of the graph, in graph order: name, weight, bias (numpy), dilations, pads, group."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise U2NetpFileError("reading an ONNX file needs the onnx package: pip install 'dugray[train]'") from exc
    path = Path(path)
    if not path.is_file():
        raise U2NetpFileError(f"no ONNX file at {path}: run 'dugray pretrained u2netp' first")
    try:
        graph = onnx.load(str(path)).graph
    except Exception as exc:  # onnx raises DecodeError and friends
        raise U2NetpFileError(f"{path} is not a readable ONNX file ({type(exc).__name__})") from exc
    inits = {t.name: t for t in graph.initializer}
    convs = []
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        attrs = {a.name: a for a in node.attribute}
        if len(node.input) < 3 or node.input[1] not in inits or node.input[2] not in inits:
            raise U2NetpFileError(f"Conv node {len(convs)} ({node.name}) has no weight and bias initializers")
        convs.append(
            {
                "name": node.name,
                "weight_name": node.input[1],
                "weight": numpy_helper.to_array(inits[node.input[1]]),
                "bias": numpy_helper.to_array(inits[node.input[2]]),
                "dilations": list(attrs["dilations"].ints) if "dilations" in attrs else [1, 1],
                "pads": list(attrs["pads"].ints) if "pads" in attrs else [0, 0, 0, 0],
                "group": attrs["group"].i if "group" in attrs else 1,
            }
        )
    return convs


def u2netp_state_from_onnx(path, net: U2NetP | None = None) -> dict[str, torch.Tensor]:
    """The port's state dict (RGB input convs; the caller adds user channels) from the file."""
    net = net if net is not None else U2NetP()
    ours = conv_order(net)
    names = {id(m): n for n, m in net.named_modules()}
    theirs = read_onnx_convs(path)
    if len(theirs) != len(ours):
        raise U2NetpFileError(f"the file has {len(theirs)} Conv nodes, U^2-Netp has {len(ours)}")
    state: dict[str, torch.Tensor] = {}
    for i, (mod, conv) in enumerate(zip(ours, theirs)):
        key = names[id(mod)]
        w, b = conv["weight"], conv["bias"]
        want = (mod.out_channels, 3 if i == 0 else mod.in_channels, *mod.kernel_size)
        where = f"Conv node {i} ({conv['name'] or conv['weight_name']}) -> {key}"
        if tuple(w.shape) != want or tuple(b.shape) != (mod.out_channels,):
            raise U2NetpFileError(f"{where}: weight {tuple(w.shape)} / bias {tuple(b.shape)}, expected {want}")
        pad = mod.padding[0]
        if conv["dilations"] != list(mod.dilation) or conv["pads"] != [pad] * 4 or conv["group"] != 1:
            raise U2NetpFileError(
                f"{where}: dilations {conv['dilations']} pads {conv['pads']} group {conv['group']}, "
                f"expected {list(mod.dilation)} {[pad] * 4} 1"
            )
        named = i - (len(ours) - len(SIDE_NAMES))
        if named >= 0 and not conv["weight_name"].startswith(SIDE_NAMES[named]):
            raise U2NetpFileError(f"{where}: initializer {conv['weight_name']!r}, expected {SIDE_NAMES[named]}.weight")
        # copies: onnx's arrays are read-only views of the protobuf (torch warns on those)
        state[f"{key}.weight"] = torch.from_numpy(np.array(w, dtype=np.float32))
        state[f"{key}.bias"] = torch.from_numpy(np.array(b, dtype=np.float32))
    return state


def with_zero_inputs(state: dict[str, torch.Tensor], key: str, extra: int) -> dict[str, torch.Tensor]:
    """``extra`` zero input channels appended after the RGB ones of conv ``key`` (the user planes)."""
    if extra:
        w = state[f"{key}.weight"]
        state = dict(state)
        state[f"{key}.weight"] = torch.cat([w, w.new_zeros(w.shape[0], extra, *w.shape[2:])], dim=1)
    return state


def load_u2netp(path, extra_in: int = 0) -> U2NetP:
    """The port with the file's weights; ``extra_in`` zero-initialised input channels after RGB."""
    net = U2NetP(extra_in=extra_in)
    state = u2netp_state_from_onnx(path, U2NetP())
    first = next(n for n, m in net.named_modules() if isinstance(m, nn.Conv2d))
    net.load_state_dict(with_zero_inputs(state, first, extra_in), strict=True)
    return net.eval()
