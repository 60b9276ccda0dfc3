"""Datasets: the embedded mini dataset generator, manifests, the readers training jobs use, the
pretraining augmentations (:mod:`sslzoo.data.transforms`) and ORL's stage-3 dataset."""
