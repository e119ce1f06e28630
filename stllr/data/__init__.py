"""Datasets, read from local disk only (nothing is ever downloaded).

* :mod:`stllr.data.shd_frames` / :mod:`stllr.data.shd_standin` — SHD (hdf5) and its stand-in;
* :mod:`stllr.data.dvs_gesture`, :mod:`stllr.data.cifar10_dvs`, :mod:`stllr.data.ncaltech101`
  — tonic-based event-camera pipelines with the reference preprocessing;
* :mod:`stllr.data.custom_events` — the bring-your-own hdf5 event format;
* :mod:`stllr.data.standins` — generated stand-ins in each data set's real on-disk format;
* :mod:`stllr.data.events` — shared pieces: offline checks, binning, frame cache, batching.

Layouts and preprocessing: ``docs/data.md``.
"""
