# sslzoo: the self-supervised learning model zoo as one Snakemake workflow.
#
#   snakemake --profile profiles/local     # the mini zoo on the embedded data (config/mini.yaml)
#   snakemake --profile profiles/slurm     # the full zoo on a SLURM cluster (config/config.yaml)
#
# The configuration comes from the profile (or --configfile); without one, the mini zoo.
# The rules only wire files together; every job is one `python -m sslzoo <step>` command.

import os
import sys

from snakemake.utils import min_version

min_version("9.0")

# Jobs run this checkout's code (`python -m sslzoo`), also in an environment where sslzoo
# is not installed (e.g. --software-deployment-method conda with workflow/envs/sslzoo.yaml).
# (Set with update(): the variable is provided here, not required from the user.)
os.environ.update(
    PYTHONPATH=os.pathsep.join(filter(None, [os.path.join(workflow.basedir, "src"), os.getenv("PYTHONPATH")]))
)
# The workflow itself reads the benchmark registry (sslzoo/benchmarks/registry.py, standard library only).
sys.path.insert(0, os.path.join(workflow.basedir, "src"))

# No --configfile (from the command line or the chosen profile): the embedded mini zoo. The
# profiles/default/ workflow profile is applied on top of any --profile, so it names no config
# file; a config file given by a profile or on the command line replaces this one, unmerged.
if not config:

    configfile: "config/mini.yaml"


include: "workflow/rules/common.smk"


# ORL's per-image stage-2 steps run as this many jobs each (`--set-scatter` overrides).
scattergather:
    orl_proposals=config["orl"]["proposal_shards"],
    orl_correspondence=config["orl"]["correspondence_shards"],


include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/orl.smk"
include: "workflow/rules/bench_classification.smk"
include: "workflow/rules/bench_dense.smk"
include: "workflow/rules/tables.smk"


# `snakemake --report report.html` after a run: the tables and figures, with captions.
report: "workflow/report/workflow.rst"


rule all:
    input:
        all_tables(),
        all_plots(),
    default_target: True
