# Datasets: the embedded mini datasets, and one manifest per (dataset, split) that every
# later job reads instead of scanning folders again.


rule make_mini_data:
    output:
        summary="resources/mini/summary.json",
    params:
        out=output_dir,
        seed=mini_data_seed(),
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/make_mini_data.log",
    benchmark:
        "logs/benchmarks/make_mini_data.tsv"
    threads: res("make_mini_data", "threads")
    resources:
        mem_mb=res("make_mini_data", "mem_mb"),
        runtime=res("make_mini_data", "runtime"),
    shell:
        "python -m sslzoo make-mini-data --out {params.out} --seed {params.seed} > {log} 2>&1"


rule manifest:
    input:
        mini_data_marker,
    output:
        "resources/manifests/{list_dataset}_{split}.json",
    params:
        images=manifest_images,
        list_arg=manifest_list_arg,
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/manifest/{list_dataset}_{split}.log",
    benchmark:
        "logs/benchmarks/manifest/{list_dataset}_{split}.tsv"
    threads: res("manifest", "threads")
    resources:
        mem_mb=res("manifest", "mem_mb"),
        runtime=res("manifest", "runtime"),
    shell:
        "python -m sslzoo manifest --dataset {wildcards.list_dataset} --split {wildcards.split}"
        " --images {params.images} {params.list_arg} --out {output} > {log} 2>&1"


rule inat_manifest:
    input:
        mini_data_marker,
    output:
        "resources/manifests/inat18_{split}.json",
    params:
        json=inat_json,
        images=inat_images,
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/manifest/inat18_{split}.log",
    benchmark:
        "logs/benchmarks/manifest/inat18_{split}.tsv"
    threads: res("manifest", "threads")
    resources:
        mem_mb=res("manifest", "mem_mb"),
        runtime=res("manifest", "runtime"),
    shell:
        "python -m sslzoo inat-manifest --json {params.json} --images {params.images} --split {wildcards.split}"
        " --out {output} > {log} 2>&1"


rule voc_manifest:
    input:
        mini_data_marker,
    output:
        "resources/manifests/voc07_{split}.json",
    params:
        devkit=voc_devkit,
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/manifest/voc07_{split}.log",
    benchmark:
        "logs/benchmarks/manifest/voc07_{split}.tsv"
    threads: res("manifest", "threads")
    resources:
        mem_mb=res("manifest", "mem_mb"),
        runtime=res("manifest", "runtime"),
    shell:
        "python -m sslzoo voc-manifest --devkit {params.devkit} --split {wildcards.split} --out {output} > {log} 2>&1"


rule coco_manifest:
    input:
        mini_data_marker,
    output:
        "resources/manifests/coco_{split}.json",
    params:
        images=coco_images,
        annotations=coco_annotations,
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/manifest/coco_{split}.log",
    benchmark:
        "logs/benchmarks/manifest/coco_{split}.tsv"
    threads: res("manifest", "threads")
    resources:
        mem_mb=res("manifest", "mem_mb"),
        runtime=res("manifest", "runtime"),
    shell:
        "python -m sslzoo coco-manifest --images {params.images} --annotations {params.annotations}"
        " --split {wildcards.split} --out {output} > {log} 2>&1"
