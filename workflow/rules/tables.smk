# The model zoo's pages: one markdown page per method and model_zoo.md, from every
# metrics.json. Target rules per table let a user rebuild just one benchmark's rows.


rule tables:
    input:
        metrics=all_benchmark_results(),
        models=model_config_files(),
    output:
        zoo="results/tables/model_zoo.md",
        pages=method_pages(),
    params:
        out_dir=output_dir,
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/tables.log",
    benchmark:
        "logs/benchmarks/tables.tsv"
    threads: res("tables", "threads")
    resources:
        mem_mb=res("tables", "mem_mb"),
        runtime=res("tables", "runtime"),
    shell:
        "python -m sslzoo tables --metrics {input.metrics} --models {input.models}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule table_knn_imagenet:
    input:
        benchmark_results("knn_imagenet"),
    default_target: False
