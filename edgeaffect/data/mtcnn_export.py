"""Build the MTCNN ONNX files that :mod:`edgeaffect.data.detectors` runs, from the ``facenet-pytorch`` wheel.

The wheel ships the P/R/O-Net weights (MIT) as state dicts; the three nets are re-declared here with the
wheel's layer names (importing ``facenet_pytorch`` itself needs torchvision, which does not load beside
our CPU torch), loaded, and exported with dynamic batch and image size.  Run once at build time::

    pip install --no-deps facenet-pytorch && python -m edgeaffect.data.mtcnn_export

The ONNX files are committed under ``edgeaffect/data/weights/mtcnn/`` and ship in the package, so the
deploy install (no torch) runs the detector with ONNX Runtime or OpenVINO and nothing is downloaded.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from ..errors import EdgeAffectError
from ..lazy import lazy_import

torch = lazy_import("torch", "train")

OUT_DIR = Path(__file__).with_name("weights") / "mtcnn"


def wheel_weights() -> Path:
    """The ``facenet_pytorch/data`` folder of the installed wheel (found without importing the package)."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise EdgeAffectError("facenet-pytorch is not installed: pip install --no-deps facenet-pytorch")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _nets():
    from torch import nn

    def block(cin, cout, k, pool=None):
        layers = [nn.Conv2d(cin, cout, k), nn.PReLU(cout)]
        return layers + ([nn.MaxPool2d(*pool, ceil_mode=True)] if pool else [])

    class PNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.prelu1, self.pool1 = block(3, 10, 3, (2, 2))
            self.conv2, self.prelu2 = block(10, 16, 3)
            self.conv3, self.prelu3 = block(16, 32, 3)
            self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

        def forward(self, x):
            x = self.prelu1(self.conv1(x))
            x = self.prelu3(self.conv3(self.prelu2(self.conv2(self.pool1(x)))))
            return self.conv4_2(x), torch.softmax(self.conv4_1(x), 1)

    class RNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.prelu1, self.pool1 = block(3, 28, 3, (3, 2))
            self.conv2, self.prelu2, self.pool2 = block(28, 48, 3, (3, 2))
            self.conv3, self.prelu3 = block(48, 64, 2)
            self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
            self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.prelu3(self.conv3(x)).permute(0, 3, 2, 1).reshape(x.shape[0], -1)
            x = self.prelu4(self.dense4(x))
            return self.dense5_2(x), torch.softmax(self.dense5_1(x), 1)

    class ONet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.prelu1, self.pool1 = block(3, 32, 3, (3, 2))
            self.conv2, self.prelu2, self.pool2 = block(32, 64, 3, (3, 2))
            self.conv3, self.prelu3, self.pool3 = block(64, 64, 3, (2, 2))
            self.conv4, self.prelu4 = block(64, 128, 2)
            self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
            self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.pool3(self.prelu3(self.conv3(x)))
            x = self.prelu4(self.conv4(x)).permute(0, 3, 2, 1).reshape(x.shape[0], -1)
            x = self.prelu5(self.dense5(x))
            return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), 1)

    return {"pnet": (PNet, 12, ("reg", "prob")), "rnet": (RNet, 24, ("reg", "prob")),
            "onet": (ONet, 48, ("reg", "landmarks", "prob"))}


def load_net(name: str, weights: Path | None = None):
    """One of the wheel's nets as a torch module (eval mode), for export and for the parity test."""
    cls, _, _ = _nets()[name]
    net = cls()
    net.load_state_dict(torch.load((weights or wheel_weights()) / f"{name}.pt", map_location="cpu"))
    return net.eval()


def export(out_dir: Path = OUT_DIR, weights: Path | None = None) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (_, size, outputs) in _nets().items():
        net = load_net(name, weights)
        dynamic = {"image": {0: "batch", 2: "height", 3: "width"} if name == "pnet" else {0: "batch"},
                   **{o: {0: "batch"} for o in outputs}}
        path = out_dir / f"{name}.onnx"
        torch.onnx.export(net, (torch.zeros(1, 3, size, size),), str(path), input_names=["image"],
                          output_names=list(outputs), dynamic_axes=dynamic, opset_version=17, dynamo=False)
        written.append(path)
    return written


if __name__ == "__main__":
    for p in export(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR):
        print(p, p.stat().st_size)
