# Pretraining and backbone extraction. Resume state lives in results/pretrain/{model}/work/,
# which is not a declared output: Snakemake deletes outputs before a job runs, and a
# requeued or rerun job must find its last epoch checkpoint there.


rule pretrain:
    input:
        manifest=pretrain_manifest,
        correspondence=pretrain_correspondence,
    output:
        final="results/pretrain/{pretrained}/final.pth",
        train_log="results/pretrain/{pretrained}/train_log.jsonl",
        run="results/pretrain/{pretrained}/run.json",
    params:
        # the model config's training values are params, not the file: a new reported number
        # or extra benchmark in it reruns the tables, not the pretraining
        config="config/models/{pretrained}.yaml",
        work_dir="results/pretrain/{pretrained}/work",
        seed=config["seed"],
        protocol=pretrain_protocol,
        correspondence=pretrain_correspondence_arg,
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/pretrain/{pretrained}.log",
    benchmark:
        "logs/benchmarks/pretrain/{pretrained}.tsv"
    threads: res("pretrain", "threads")
    resources:
        gpu=pretrain_gpus,
        cpus_per_gpu=res("pretrain", "cpus_per_gpu"),
        mem_mb=res("pretrain", "mem_mb"),
        runtime=res("pretrain", "runtime"),
    shell:
        "python -m sslzoo --nproc-per-node {resources.gpu} pretrain"
        " --config {params.config} --manifest {input.manifest} --work-dir {params.work_dir}"
        " {params.correspondence} --seed {params.seed} --out {output.final}"
        " --train-log-out {output.train_log} --run-out {output.run} > {log} 2>&1"


rule extract_backbone:
    input:
        "results/pretrain/{pretrained}/final.pth",
    output:
        "results/backbones/{pretrained}.pth",
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/extract_backbone/{pretrained}.log",
    benchmark:
        "logs/benchmarks/extract_backbone/{pretrained}.tsv"
    threads: res("extract_backbone", "threads")
    resources:
        mem_mb=res("extract_backbone", "mem_mb"),
        runtime=res("extract_backbone", "runtime"),
    shell:
        "python -m sslzoo extract-backbone --checkpoint {input} --out {output} > {log} 2>&1"


# A checkpoint the run kept at an epoch listed under `snapshots:` (work/epoch_<N>.pth, written
# atomically at that epoch's end and never removed) is a model of its own, `<model>_ep<N>`. The
# kept file is not a declared output (the work folder never is); the input is the run's final
# checkpoint, so extraction waits for the run to finish and reruns when the run does.
rule extract_snapshot:
    input:
        snapshot_final,
    output:
        "results/backbones/{snapshot}.pth",
    params:
        work_dir=snapshot_work_dir,
        epoch=snapshot_epoch,
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/extract_backbone/{snapshot}.log",
    benchmark:
        "logs/benchmarks/extract_backbone/{snapshot}.tsv"
    threads: res("extract_backbone", "threads")
    resources:
        mem_mb=res("extract_backbone", "mem_mb"),
        runtime=res("extract_backbone", "runtime"),
    shell:
        "python -m sslzoo extract-snapshot --final {input} --work-dir {params.work_dir}"
        " --epoch {params.epoch} --out {output} > {log} 2>&1"


rule import_external:
    input:
        external_checkpoint,
    output:
        "results/backbones/{external}.pth",
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/extract_backbone/{external}.log",
    benchmark:
        "logs/benchmarks/extract_backbone/{external}.tsv"
    threads: res("extract_backbone", "threads")
    resources:
        mem_mb=res("extract_backbone", "mem_mb"),
        runtime=res("extract_backbone", "runtime"),
    shell:
        "python -m sslzoo extract-backbone --checkpoint {input} --out {output} > {log} 2>&1"


rule random_backbone:
    output:
        "results/backbones/random.pth",
    params:
        depth=config["baseline"]["depth"],
        seed=config["seed"],
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/extract_backbone/random.log",
    benchmark:
        "logs/benchmarks/extract_backbone/random.tsv"
    threads: res("extract_backbone", "threads")
    resources:
        mem_mb=res("extract_backbone", "mem_mb"),
        runtime=res("extract_backbone", "runtime"),
    shell:
        "python -m sslzoo random-backbone --depth {params.depth} --seed {params.seed} --out {output} > {log} 2>&1"
