"""The training engine: process groups (dist), optimisers (optim), lr schedules (schedules) and
the one pretraining loop with checkpoint/resume (trainer).

Import the submodules directly, e.g. ``from sslzoo.engine.trainer import train``.
"""
