# Classification benchmarks over cached features: one feature job per (model, dataset,
# split), read by every benchmark that needs those features (nothing extracts twice).


rule extract_features:
    input:
        backbone="results/backbones/{model}.pth",
        manifest="resources/manifests/{dataset}_{split}.json",
        protocol=config["features"],
    output:
        "results/features/{model}/{dataset}_{split}.npz",
    params:
        protocol=features_protocol,
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/extract_features/{model}/{dataset}_{split}.log",
    benchmark:
        "logs/benchmarks/extract_features/{model}/{dataset}_{split}.tsv"
    threads: res("extract_features", "threads")
    resources:
        gpu=res("extract_features", "gpu"),
        cpus_per_gpu=res("extract_features", "cpus_per_gpu"),
        mem_mb=res("extract_features", "mem_mb"),
        runtime=res("extract_features", "runtime"),
    shell:
        "torchrun --standalone --nproc-per-node {resources.gpu} -m sslzoo extract-features"
        " --backbone {input.backbone} --manifest {input.manifest} --config {input.protocol}"
        " --dataset {wildcards.dataset} --out {output} > {log} 2>&1"


rule knn:
    input:
        train="results/features/{model}/imagenet_train.npz",
        test="results/features/{model}/imagenet_val.npz",
        protocol=protocol_file("knn_imagenet"),
    output:
        "results/benchmarks/knn_imagenet/{model}/metrics.json",
    params:
        protocol=protocol_values("knn_imagenet"),
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/knn_imagenet/{model}.log",
    benchmark:
        "logs/benchmarks/knn_imagenet/{model}.tsv"
    threads: res("knn", "threads")
    resources:
        mem_mb=res("knn", "mem_mb"),
        runtime=res("knn", "runtime"),
    shell:
        "python -m sslzoo knn --train {input.train} --test {input.test} --config {input.protocol}"
        " --out {output} > {log} 2>&1"
