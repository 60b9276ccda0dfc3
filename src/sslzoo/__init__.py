"""sslzoo: the self-supervised learning model zoo as one Snakemake workflow."""

__version__ = "0.1.0"
