"""S-TLLR on Lava's own learning engine (``LearningDense`` + ``Loihi3FLearningRule``).

* :mod:`.neuron` — the :class:`~.neuron.process.STLLRLearningLIF` Process (a LearningLIF
  sending y1 = post trace Q, y2 = third factor L, y3 = Ψ) and its float / fixed models;
  :mod:`.config` — their constants (:class:`~.config.STLLRNeuronConfig`).
* :mod:`.rule` — the grammar mapping, its calibration (:func:`~.rule.calibrate_mapping`)
  and the builders (:func:`~.rule.build_stllr_learning_dense`,
  :func:`~.rule.make_stllr_neuron`, :func:`~.rule.connect_plastic`).
* :mod:`.deviation` — ΔW of both modes against the exact rule
  (``python -m lava_models.learning_engine.deviation`` prints JSON).

Nothing is imported here. Lava's model discovery imports the Process's package and
executes every module in its directory whenever it compiles an ``STLLRLearningLIF``
(docs/lava.md §7, pitfall 4); that directory (:mod:`.neuron`) holds only the Process and its
models, which import numpy, Lava and the config (torch only when a model is built).
"""
