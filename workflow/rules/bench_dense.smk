# Detection and segmentation: a detector / segmenter fine-tuned end to end from each backbone,
# on the dataset folders of config `datasets:` (read directly, no manifest). Resume state lives
# in the work dir next to metrics.json, which is not an output (it survives a requeue).
# A detection protocol with `repeats: N` > 1 runs N times instead, each run its own job with its
# own seed (detection_run), and one light job averages them into the table's metrics.json
# (detection_average); a protocol run once keeps its single `detection` job.


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


rule detection_run:
    input:
        mini_data_marker,
        backbone="results/backbones/{model}.pth",
        protocol=benchmark_protocol,
    output:
        "results/benchmarks/{det_repeated}/{model}/run{repeat}/metrics.json",
    params:
        work_dir="results/benchmarks/{det_repeated}/{model}/run{repeat}/work",
        data=detection_data,
        seed=detection_run_seed,
        protocol=benchmark_protocol_values,
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/{det_repeated}/{model}/run{repeat}.log",
    benchmark:
        "logs/benchmarks/{det_repeated}/{model}/run{repeat}.tsv"
    threads: res("detection", "threads")
    resources:
        gpu=res("detection", "gpu"),
        cpus_per_gpu=res("detection", "cpus_per_gpu"),
        mem_mb=res("detection", "mem_mb"),
        runtime=res("detection", "runtime"),
    shell:
        "python -m sslzoo --nproc-per-node {resources.gpu} detection --backbone {input.backbone}"
        " --config {input.protocol} --benchmark {wildcards.det_repeated} --model {wildcards.model} {params.data}"
        " --work-dir {params.work_dir} --seed {params.seed} --out {output} > {log} 2>&1"


rule detection_average:
    input:
        detection_runs,
    output:
        "results/benchmarks/{det_repeated}/{model}/metrics.json",
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/{det_repeated}/{model}/average.log",
    benchmark:
        "logs/benchmarks/{det_repeated}/{model}/average.tsv"
    threads: res("tables", "threads")
    resources:
        mem_mb=res("tables", "mem_mb"),
        runtime=res("tables", "runtime"),
    shell:
        "python -m sslzoo average-runs --runs {input} --benchmark {wildcards.det_repeated}"
        " --model {wildcards.model} --out {output} > {log} 2>&1"


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
