"""Datasets: the embedded mini dataset generator, manifests, and the readers training jobs use."""
