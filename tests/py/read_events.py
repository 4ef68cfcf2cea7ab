#!/usr/bin/env python3
"""Read a folder of TensorBoard event files with TensorBoard's own reader.

Usage: read_events.py LOGDIR

Every folder under LOGDIR (LOGDIR included) that holds an event file is one
run, named by its path relative to LOGDIR ("." for LOGDIR itself), as the
TensorBoard server names runs. Prints one JSON object:

  {"runs": {RUN: {
      "scalars": {TAG: [[step, value], ...]},
      "images":  {TAG: [{"step", "width", "height", "png_width", "png_height"}]},
      "texts":   {TAG: [{"step", "text"}]},
      "histograms": {TAG: [{"step", "buckets": [[left, right, count], ...]}]},
      "graph": null, or the run's graph as [{"name", "op", "inputs",
               "output_shapes": [[dim, ...], ...], "attrs": {KEY: TEXT}}] in order,
      "plugins": {TAG: PLUGIN_NAME},
      "hparams": {TAG: the Experiment, SessionStartInfo or SessionEndInfo
                   that TensorBoard's hparams metadata parser returns, as a dict}}}}

Images are decoded (every chunk CRC, IHDR, the inflated IDAT size) before
their size is reported; a broken PNG fails the script.
"""

import json
import os
import struct
import sys
import zlib

from google.protobuf import json_format
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.util import tensor_util

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def png_size(data):
    """Check a PNG fully enough to trust it; return (width, height)."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG signature")
    pos, ihdr, idat = len(PNG_SIGNATURE), None, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if zlib.crc32(kind + body) != crc:
            raise ValueError("bad CRC in chunk %r" % kind)
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + length
    if ihdr is None or not idat:
        raise ValueError("no IHDR or no IDAT")
    width, height, depth, color, _, _, interlace = ihdr
    raw = zlib.decompress(idat)
    if interlace == 0:
        row = 1 + (width * CHANNELS[color] * depth + 7) // 8
        if len(raw) != height * row:
            raise ValueError("pixel data is %d bytes, expected %d" % (len(raw), height * row))
    return width, height


def run_dirs(logdir):
    for folder, _, files in sorted(os.walk(logdir)):
        if any("tfevents" in f for f in files):
            rel = os.path.relpath(folder, logdir)
            yield rel.replace(os.sep, "/"), folder


HPARAMS_PARSERS = {
    hparams_metadata.EXPERIMENT_TAG: hparams_metadata.parse_experiment_plugin_data,
    hparams_metadata.SESSION_START_INFO_TAG: hparams_metadata.parse_session_start_info_plugin_data,
    hparams_metadata.SESSION_END_INFO_TAG: hparams_metadata.parse_session_end_info_plugin_data,
}


def read_run(path):
    acc = event_accumulator.EventAccumulator(
        path, size_guidance={k: 0 for k in event_accumulator.DEFAULT_SIZE_GUIDANCE}
    )
    acc.Reload()
    tags = acc.Tags()
    run = {"scalars": {}, "images": {}, "texts": {}, "histograms": {}, "plugins": {},
           "hparams": {}, "graph": None}
    if tags[event_accumulator.GRAPH]:
        run["graph"] = [
            {"name": n.name, "op": n.op, "inputs": list(n.input),
             "output_shapes": [[d.size for d in shape.dim]
                               for shape in n.attr["_output_shapes"].list.shape],
             "attrs": {k: v.s.decode("utf-8") for k, v in sorted(n.attr.items())
                       if k != "_output_shapes"}}
            for n in acc.Graph().node
        ]
    for tag in tags[event_accumulator.SCALARS]:
        run["scalars"][tag] = [[e.step, e.value] for e in acc.Scalars(tag)]
    for tag in tags[event_accumulator.IMAGES]:
        run["images"][tag] = []
        for e in acc.Images(tag):
            pw, ph = png_size(e.encoded_image_string)
            run["images"][tag].append(
                {"step": e.step, "width": e.width, "height": e.height,
                 "png_width": pw, "png_height": ph}
            )
    for tag in tags[event_accumulator.TENSORS]:
        plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
        run["plugins"][tag] = plugin
        if plugin == "text":
            run["texts"][tag] = [
                {"step": e.step,
                 "text": tensor_util.make_ndarray(e.tensor_proto).item().decode("utf-8")}
                for e in acc.Tensors(tag)
            ]
        elif plugin == "histograms":
            run["histograms"][tag] = [
                {"step": e.step,
                 "buckets": tensor_util.make_ndarray(e.tensor_proto).tolist()}
                for e in acc.Tensors(tag)
            ]
    try:
        hparams_content = acc.PluginTagToContent("hparams")
    except KeyError:  # no hparams summary in this run
        hparams_content = {}
    for tag, content in hparams_content.items():
        parsed = HPARAMS_PARSERS[tag](content)
        run["hparams"][tag] = json_format.MessageToDict(parsed)
    return run


def read_logdir(logdir):
    return {"runs": {name: read_run(path) for name, path in run_dirs(logdir)}}


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: read_events.py LOGDIR")
    json.dump(read_logdir(sys.argv[1]), sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
