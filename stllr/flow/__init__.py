"""Event-based optical flow (the paper's MVSEC regression task): the MVSEC hdf5 files and
their stand-in, Spike-FlowNet's split coding, ground-truth propagation, the
self-supervised loss, AEE evaluation and the training loop. See docs/flow.md."""
