# ORL stage 2 (Xie et al., "Unsupervised Object-Level Representation Learning from Scene
# Images", NeurIPS 2021): from the stage-1 model (image-level BYOL, an ordinary `pretrain` job)
# to the correspondence file that stage 3 (`pretrain` of the ORL model) trains on.
#
#   stage-1 final.pth ─> orl_knn ─────────────────────────────┐
#   manifest ─> orl_proposals (N shards, CPU) ─> orl_merge_proposals ─> orl_correspondence (M shards, GPU)
#                                                              ─> orl_merge_correspondence ─> pretrain (ORL)
#
# Proposals depend on the images only (results/orl/{dataset}/); KNN and correspondence on the
# ORL model's stage-1 model and stage-2 protocol (results/orl/{orl_model}/). Shard counts come
# from config `orl:`; the reference's published files can replace any stage (`orl.published`).


rule orl_knn:
    input:
        checkpoint=orl_stage1_checkpoint,
        config=orl_config,
        manifest=orl_manifest,
    output:
        "results/orl/{orl_model}/knn.json",
    params:
        protocol=orl_protocol,
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/orl_knn/{orl_model}.log",
    benchmark:
        "logs/benchmarks/orl_knn/{orl_model}.tsv"
    threads: res("orl_knn", "threads")
    resources:
        gpu=res("orl_knn", "gpu"),
        cpus_per_gpu=res("orl_knn", "cpus_per_gpu"),
        mem_mb=res("orl_knn", "mem_mb"),
        runtime=res("orl_knn", "runtime"),
    shell:
        "python -m sslzoo --nproc-per-node {resources.gpu} orl-knn --checkpoint {input.checkpoint}"
        " --config {input.config} --manifest {input.manifest} --out {output} > {log} 2>&1"


rule orl_proposals:
    input:
        manifest="resources/manifests/{dataset}_train.json",
    output:
        "results/orl/{dataset}/proposals/{scatteritem}.json",
    params:
        backend=config["orl"]["proposal_backend"],
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/orl_proposals/{dataset}/{scatteritem}.log",
    benchmark:
        "logs/benchmarks/orl_proposals/{dataset}/{scatteritem}.tsv"
    threads: res("orl_proposals", "threads")
    resources:
        mem_mb=res("orl_proposals", "mem_mb"),
        runtime=res("orl_proposals", "runtime"),
    shell:
        "python -m sslzoo orl-proposals --manifest {input.manifest} --shard {wildcards.scatteritem}"
        " --backend {params.backend} --out {output} > {log} 2>&1"


rule orl_merge_proposals:
    input:
        manifest="resources/manifests/{dataset}_train.json",
        shards=orl_proposal_shards,
    output:
        "results/orl/{dataset}/proposals.json",
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/orl_proposals/{dataset}/merge.log",
    benchmark:
        "logs/benchmarks/orl_proposals/{dataset}/merge.tsv"
    threads: res("orl_merge", "threads")
    resources:
        mem_mb=res("orl_merge", "mem_mb"),
        runtime=res("orl_merge", "runtime"),
    shell:
        "python -m sslzoo orl-merge-proposals --manifest {input.manifest} --out {output} {input.shards} > {log} 2>&1"


rule orl_correspondence:
    input:
        checkpoint=orl_stage1_checkpoint,
        config=orl_config,
        manifest=orl_manifest,
        knn=orl_knn,
        proposals=orl_proposals,
    output:
        "results/orl/{orl_model}/correspondence/{scatteritem}.json",
    params:
        protocol=orl_protocol,
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/orl_correspondence/{orl_model}/{scatteritem}.log",
    benchmark:
        "logs/benchmarks/orl_correspondence/{orl_model}/{scatteritem}.tsv"
    threads: res("orl_correspondence", "threads")
    resources:
        gpu=res("orl_correspondence", "gpu"),
        cpus_per_gpu=res("orl_correspondence", "cpus_per_gpu"),
        mem_mb=res("orl_correspondence", "mem_mb"),
        runtime=res("orl_correspondence", "runtime"),
    shell:
        "python -m sslzoo --nproc-per-node {resources.gpu} orl-correspondence"
        " --checkpoint {input.checkpoint} --config {input.config} --manifest {input.manifest} --knn {input.knn}"
        " --proposals {input.proposals} --shard {wildcards.scatteritem} --out {output} > {log} 2>&1"


rule orl_merge_correspondence:
    input:
        config=orl_config,
        knn=orl_knn,
        shards=orl_correspondence_shards,
    output:
        "results/orl/{orl_model}/correspondence.json",
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/orl_correspondence/{orl_model}/merge.log",
    benchmark:
        "logs/benchmarks/orl_correspondence/{orl_model}/merge.tsv"
    threads: res("orl_merge", "threads")
    resources:
        mem_mb=res("orl_merge", "mem_mb"),
        runtime=res("orl_merge", "runtime"),
    shell:
        "python -m sslzoo orl-merge-correspondence --config {input.config} --knn {input.knn} --out {output}"
        " {input.shards} > {log} 2>&1"
