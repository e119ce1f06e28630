"""Current-based and adaptive spiking neurons (CuLIF, PCuLIF, AdLIF, CuAdLIF); see
docs/neurons.md. The toolkit's one-state LIF lives in :mod:`stllr.neuron`."""
