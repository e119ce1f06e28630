"""Datasets, read from local disk only (nothing is ever downloaded).

* :mod:`stllr.data.shd_frames` / :mod:`stllr.data.shd_standin` — SHD (hdf5) and its stand-in;
* :mod:`stllr.data.dvs_gesture`, :mod:`stllr.data.cifar10_dvs`, :mod:`stllr.data.ncaltech101`
  — tonic-based event-camera pipelines with the reference preprocessing;
* :mod:`stllr.data.custom_events` — the bring-your-own hdf5 event format;
* :mod:`stllr.data.standins` — generated stand-ins in each data set's real on-disk format
  (re-exports :mod:`~stllr.data.standin_gesture`, :mod:`~stllr.data.standin_ncaltech101`,
  :mod:`~stllr.data.standin_cifar10dvs`, built on :mod:`~stllr.data.event_writers`,
  :mod:`~stllr.data.standin_saccades`, :mod:`~stllr.data.standin_random` and
  :mod:`~stllr.data.standin_markers`);
* :mod:`stllr.data.events` — shared pieces (re-exports :mod:`~stllr.data.offline` checks,
  :mod:`~stllr.data.binning`, :mod:`~stllr.data.recording_sources`,
  :mod:`~stllr.data.frame_cache`, :mod:`~stllr.data.frame_dataset`,
  :mod:`~stllr.data.batching`).

Layouts and preprocessing: ``docs/data.md``.
"""
