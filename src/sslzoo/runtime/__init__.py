"""The runtime layer: what every training job shares, pretraining (:mod:`sslzoo.engine`) and the
benchmarks (:mod:`sslzoo.benchmarks`, :mod:`sslzoo.orl`) alike. It imports neither of them.

- :mod:`~sslzoo.runtime.dist`: process groups under torchrun (gloo on CPU, nccl on GPU, one
  plain process otherwise) and the collectives (barrier, mean all-reduce, tensor and object gathers);
- :mod:`~sslzoo.runtime.seeding`: derived seeds, seeding the global generators, their state
  for resuming, and :class:`~sslzoo.runtime.seeding.EpochSampler` (an epoch's sample order from
  ``(seed, epoch)`` alone, split over the ranks);
- :mod:`~sslzoo.runtime.checkpoint`: atomic state files (``torch.save`` through a temporary file
  and a rename);
- :mod:`~sslzoo.runtime.device`: batches (tensors nested in lists, tuples, dicts) to the device;
- :mod:`~sslzoo.runtime.optim`: SGD and LARS with per-group weight decay and norm/bias exclusion;
- :mod:`~sslzoo.runtime.schedules`: per-iteration lr schedules (mmcv's ``LrUpdaterHook``) and
  their per-group ``iteration -> value`` form;
- :mod:`~sslzoo.runtime.loaders`: the seeded data loaders of an epoch or of an iteration stream;
- :mod:`~sslzoo.runtime.run_dir`: a run's work folder (resume state, identity check, setting a
  stale state aside, the JSON-lines log);
- :mod:`~sslzoo.runtime.progress`: console messages and progress bars from rank 0;
- :mod:`~sslzoo.runtime.loop`: :func:`~sslzoo.runtime.loop.fit`, the one training loop of
  pretraining, linear, semi-supervised, detection and segmentation training.

Import the submodules directly, e.g. ``from sslzoo.runtime.dist import init_distributed``.
"""
