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
        "python -m sslzoo --nproc-per-node {resources.gpu} extract-features"
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
        " --benchmark knn_imagenet --model {wildcards.model} --out {output} > {log} 2>&1"


rule linear:
    input:
        backbone="results/backbones/{model}.pth",
        train=benchmark_manifest("train"),
        val=benchmark_manifest("val"),
        protocol=benchmark_protocol,
        pooling=linear_pooling,
    output:
        "results/benchmarks/{linear}/{model}/metrics.json",
    params:
        work_dir="results/benchmarks/{linear}/{model}/work",
        seed=config["seed"],
        protocol=benchmark_protocol_values,
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/{linear}/{model}.log",
    benchmark:
        "logs/benchmarks/{linear}/{model}.tsv"
    threads: res("linear", "threads")
    resources:
        gpu=res("linear", "gpu"),
        cpus_per_gpu=res("linear", "cpus_per_gpu"),
        mem_mb=res("linear", "mem_mb"),
        runtime=res("linear", "runtime"),
    shell:
        "python -m sslzoo --nproc-per-node {resources.gpu} linear --backbone {input.backbone}"
        " --train-manifest {input.train} --val-manifest {input.val} --config {input.protocol}"
        " --benchmark {wildcards.linear} --model {wildcards.model} --work-dir {params.work_dir}"
        " --seed {params.seed} --out {output} > {log} 2>&1"


rule semi:
    input:
        backbone="results/backbones/{model}.pth",
        train=benchmark_manifest("train"),
        val=benchmark_manifest("val"),
        protocol=benchmark_protocol,
        split_file=semi_split_file,
    output:
        "results/benchmarks/{semi}/{model}/lr{lr}_head{mult}/metrics.json",
    params:
        work_dir="results/benchmarks/{semi}/{model}/lr{lr}_head{mult}/work",
        seed=config["seed"],
        protocol=benchmark_protocol_values,
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/{semi}/{model}/lr{lr}_head{mult}.log",
    benchmark:
        "logs/benchmarks/{semi}/{model}/lr{lr}_head{mult}.tsv"
    threads: res("semi", "threads")
    resources:
        gpu=res("semi", "gpu"),
        cpus_per_gpu=res("semi", "cpus_per_gpu"),
        mem_mb=res("semi", "mem_mb"),
        runtime=res("semi", "runtime"),
    shell:
        "python -m sslzoo --nproc-per-node {resources.gpu} semi --backbone {input.backbone}"
        " --train-manifest {input.train} --val-manifest {input.val} --config {input.protocol}"
        " --benchmark {wildcards.semi} --model {wildcards.model}"
        " --grid-point lr{wildcards.lr}_head{wildcards.mult} --lr {wildcards.lr} --head-mult {wildcards.mult}"
        " --work-dir {params.work_dir} --seed {params.seed} --out {output} > {log} 2>&1"


rule semi_select:
    input:
        semi_runs,
    output:
        "results/benchmarks/{semi}/{model}/metrics.json",
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/{semi}/{model}/select.log",
    benchmark:
        "logs/benchmarks/{semi}/{model}/select.tsv"
    threads: res("tables", "threads")
    resources:
        mem_mb=res("tables", "mem_mb"),
        runtime=res("tables", "runtime"),
    shell:
        "python -m sslzoo semi-select --runs {input} --benchmark {wildcards.semi} --model {wildcards.model}"
        " --out {output} > {log} 2>&1"


rule svm:
    input:
        trainval="results/features/{model}/voc07_trainval.npz",
        test="results/features/{model}/voc07_test.npz",
        protocol=protocol_file("svm_voc07"),
    output:
        "results/benchmarks/svm_voc07/{model}/metrics.json",
    params:
        protocol=protocol_values("svm_voc07"),
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/svm_voc07/{model}.log",
    benchmark:
        "logs/benchmarks/svm_voc07/{model}.tsv"
    threads: res("svm", "threads")
    resources:
        mem_mb=res("svm", "mem_mb"),
        runtime=res("svm", "runtime"),
    shell:
        "python -m sslzoo svm --trainval {input.trainval} --test {input.test} --config {input.protocol}"
        " --benchmark svm_voc07 --model {wildcards.model} --out {output} > {log} 2>&1"


rule lowshot:
    input:
        trainval="results/features/{model}/voc07_trainval.npz",
        test="results/features/{model}/voc07_test.npz",
        protocol=protocol_file("lowshot_voc07"),
    output:
        "results/benchmarks/lowshot_voc07/{model}/metrics.json",
    params:
        protocol=protocol_values("lowshot_voc07"),
        seed=config["seed"],
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/lowshot_voc07/{model}.log",
    benchmark:
        "logs/benchmarks/lowshot_voc07/{model}.tsv"
    threads: res("svm", "threads")
    resources:
        mem_mb=res("svm", "mem_mb"),
        runtime=res("svm", "runtime"),
    shell:
        "python -m sslzoo lowshot --trainval {input.trainval} --test {input.test} --config {input.protocol}"
        " --benchmark lowshot_voc07 --model {wildcards.model} --seed {params.seed}"
        " --out {output} > {log} 2>&1"
