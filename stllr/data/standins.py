"""Generated stand-ins for DVS Gesture, N-Caltech101 and CIFAR10-DVS in the real file formats.

No network is available, so the toolkit generates small, seeded datasets that the *same*
loaders read (:mod:`~stllr.data.dvs_gesture`, :mod:`~stllr.data.ncaltech101`,
:mod:`~stllr.data.cifar10_dvs`):

* **gesture-like** (:func:`make_gesture_standin`): 11 classes of moving shapes on a
  128×128×2 sensor (clapping circles, left/right waves, bars turning clockwise or
  counter-clockwise on the left or right, rolling pair, drumming pair, strumming bar,
  "other" = expanding ring + wandering blob). Events come from the moving outlines
  (polarity = sign of the normal speed), plus background noise and hot pixels; users change
  position/size/speed, lightings change noise and event density. Written as tonic's
  ``DVSGesture/ibmGesture{Train,Test}/userNN_<lighting>/<label>.npy`` ``(N, 4)`` int32
  arrays ``[x, y, p, t_ms]`` plus the (empty) archive files.
* **N-Caltech101-like** (:func:`make_ncaltech101_standin`): per class a composite "object"
  of 2–4 primitives (random per class), drawn with random pose, distractors and background,
  seen through three 100 ms saccades (a triangle, as in N-Caltech101); events at the moving
  image gradients. Written as ``NCALTECH101/Caltech101/<class>/image_XXXX.bin`` (5-byte
  events, read by tonic's ``read_mnist_file``) plus the archive file.
* **CIFAR10-DVS-like** (:func:`make_cifar10dvs_standin`): 10 classes of textured composite
  images (class-specific shapes and grating textures) filling a 128×128 view, moved in a
  repeated square loop (~1.2 s). Written as ``CIFAR10DVS/<class>/cifar10_<class>_<i>.aedat4``
  (AEDAT 4, uncompressed, read by tonic through the ``aedat`` package) plus the zip file.

Every recording draws from its own ``numpy`` generator seeded by ``(seed, dataset, split,
class, index)``, so output is bit-identical for a seed. Each dataset folder gets a
``stllr_standin.json`` marker; the ``ensure_*`` functions regenerate only when the marker is
missing or different and refuse to touch a folder that holds real data (no marker).

This module only re-exports the public names of the modules that hold them:

* :mod:`~stllr.data.standin_gesture`, :mod:`~stllr.data.standin_ncaltech101`,
  :mod:`~stllr.data.standin_cifar10dvs` — one generator each (``make_*``, ``ensure_*``);
* :mod:`~stllr.data.event_writers` — the file writers (gesture ``.npy``, N-Caltech101
  ``.bin``, AEDAT 4);
* :mod:`~stllr.data.standin_saccades` — static images seen through saccades (N-Caltech101,
  CIFAR10-DVS);
* :mod:`~stllr.data.standin_random` — seeded generators and sensor noise;
* :mod:`~stllr.data.standin_markers` — the ``stllr_standin.json`` marker bookkeeping.
"""

from __future__ import annotations

from stllr.data.event_writers import (
    AEDAT4_MAGIC,
    encode_ncaltech_bin,
    write_aedat4,
    write_gesture_npy,
)
from stllr.data.standin_cifar10dvs import (
    CIFAR_CLASSES,
    Cifar10DVSStandinConfig,
    cifar_recording,
    ensure_cifar10dvs_standin,
    make_cifar10dvs_standin,
)
from stllr.data.standin_gesture import (
    GESTURE_MOTIONS,
    LIGHTINGS,
    GestureStandinConfig,
    ensure_gesture_standin,
    gesture_recording,
    make_gesture_standin,
)
from stllr.data.standin_markers import MARKER, read_marker
from stllr.data.standin_ncaltech101 import (
    NCALTECH_CLASSES,
    NCaltech101StandinConfig,
    ensure_ncaltech101_standin,
    make_ncaltech101_standin,
    ncaltech_recording,
)
from stllr.data.standin_random import Rng
from stllr.data.standin_saccades import KINDS

__all__ = [
    "AEDAT4_MAGIC",
    "CIFAR_CLASSES",
    "GESTURE_MOTIONS",
    "KINDS",
    "LIGHTINGS",
    "MARKER",
    "NCALTECH_CLASSES",
    "Cifar10DVSStandinConfig",
    "GestureStandinConfig",
    "NCaltech101StandinConfig",
    "Rng",
    "cifar_recording",
    "encode_ncaltech_bin",
    "ensure_cifar10dvs_standin",
    "ensure_gesture_standin",
    "ensure_ncaltech101_standin",
    "gesture_recording",
    "make_cifar10dvs_standin",
    "make_gesture_standin",
    "make_ncaltech101_standin",
    "ncaltech_recording",
    "read_marker",
    "write_aedat4",
    "write_gesture_npy",
]
