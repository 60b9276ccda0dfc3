# Detection and segmentation: a detector / segmenter fine-tuned end to end from each backbone,
# on the dataset folders of config `datasets:` (read directly, no manifest). Resume state lives
# in the work dir next to metrics.json, which is not an output (it survives a requeue).


rule detection:
    input:
        mini_data_marker,
        backbone="results/backbones/{model}.pth",
        protocol=benchmark_protocol,
    output:
        "results/benchmarks/{det}/{model}/metrics.json",
    params:
        work_dir="results/benchmarks/{det}/{model}/work",
        data=detection_data,
        seed=config["seed"],
        protocol=benchmark_protocol_values,
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/{det}/{model}.log",
    benchmark:
        "logs/benchmarks/{det}/{model}.tsv"
    threads: res("detection", "threads")
    resources:
        gpu=res("detection", "gpu"),
        cpus_per_gpu=res("detection", "cpus_per_gpu"),
        mem_mb=res("detection", "mem_mb"),
        runtime=res("detection", "runtime"),
    shell:
        "python -m sslzoo --nproc-per-node {resources.gpu} detection --backbone {input.backbone}"
        " --config {input.protocol} --benchmark {wildcards.det} --model {wildcards.model} {params.data}"
        " --work-dir {params.work_dir} --seed {params.seed} --out {output} > {log} 2>&1"


rule segmentation:
    input:
        mini_data_marker,
        backbone="results/backbones/{model}.pth",
        protocol=benchmark_protocol,
    output:
        "results/benchmarks/{seg}/{model}/metrics.json",
    params:
        work_dir="results/benchmarks/{seg}/{model}/work",
        data=segmentation_data,
        seed=config["seed"],
        protocol=benchmark_protocol_values,
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/{seg}/{model}.log",
    benchmark:
        "logs/benchmarks/{seg}/{model}.tsv"
    threads: res("segmentation", "threads")
    resources:
        gpu=res("segmentation", "gpu"),
        cpus_per_gpu=res("segmentation", "cpus_per_gpu"),
        mem_mb=res("segmentation", "mem_mb"),
        runtime=res("segmentation", "runtime"),
    shell:
        "python -m sslzoo --nproc-per-node {resources.gpu} segmentation --backbone {input.backbone}"
        " --config {input.protocol} --benchmark {wildcards.seg} --model {wildcards.model} {params.data}"
        " --work-dir {params.work_dir} --seed {params.seed} --out {output} > {log} 2>&1"
