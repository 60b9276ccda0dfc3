"""The pretraining engine: the one pretraining loop with checkpoint/resume (trainer) and the
checkpoints it keeps of the epochs a model config lists under ``snapshots:`` (snapshots).

What it shares with the benchmarks (process groups, seeding and samplers, atomic state files,
optimisers, lr schedules) is in :mod:`sslzoo.runtime`. Import the submodules directly, e.g.
``from sslzoo.engine.trainer import train``.
"""
