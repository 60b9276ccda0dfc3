# The model zoo's pages and the report's figures. Each page is its own job that reads only the
# metrics it shows: a change to one benchmark rewrites that benchmark's table, the method pages
# and model_zoo.md, nothing else. Every page is written as markdown and as HTML (the report).
# The pretraining run records (run.json) of the models a page shows are inputs too: a row whose
# run used other processes or another total batch than its protocol gets a footnote.


rule benchmark_table:
    input:
        metrics=table_metrics,
        models=model_config_files(),
        runs=pretrain_runs,
    output:
        md="results/tables/benchmarks/{table}.md",
        html=report(
            "results/tables/benchmarks/{table}.html",
            caption="../report/benchmark_table.rst",
            category="Tables",
            subcategory="Benchmarks",
            labels={"table": "{table}"},
        ),
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/tables/benchmarks/{table}.log",
    benchmark:
        "logs/benchmarks/tables/benchmarks/{table}.tsv"
    threads: res("tables", "threads")
    resources:
        mem_mb=res("tables", "mem_mb"),
        runtime=res("tables", "runtime"),
    shell:
        "python -m sslzoo tables --benchmark {wildcards.table} --metrics {input.metrics}"
        " --models {input.models} --runs {input.runs} --out {output.md} --html {output.html} > {log} 2>&1"


rule method_page:
    input:
        metrics=method_metrics,
        models=method_model_configs,
        runs=pretrain_runs,
    output:
        md="results/tables/{method}.md",
        html=report(
            "results/tables/{method}.html",
            caption="../report/method_page.rst",
            category="Tables",
            subcategory="Methods",
            labels={"method": "{method}"},
        ),
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/tables/{method}.log",
    benchmark:
        "logs/benchmarks/tables/{method}.tsv"
    threads: res("tables", "threads")
    resources:
        mem_mb=res("tables", "mem_mb"),
        runtime=res("tables", "runtime"),
    shell:
        "python -m sslzoo tables --method {wildcards.method} --metrics {input.metrics}"
        " --models {input.models} --runs {input.runs} --out {output.md} --html {output.html} > {log} 2>&1"


rule model_zoo_table:
    input:
        metrics=all_benchmark_results(),
        models=model_config_files(),
        runs=pretrain_runs,
    output:
        md="results/tables/model_zoo.md",
        html=report(
            "results/tables/model_zoo.html",
            caption="../report/model_zoo.rst",
            category="Tables",
            subcategory="Model zoo",
            labels={"page": "model_zoo"},
        ),
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/tables/model_zoo.log",
    benchmark:
        "logs/benchmarks/tables/model_zoo.tsv"
    threads: res("tables", "threads")
    resources:
        mem_mb=res("tables", "mem_mb"),
        runtime=res("tables", "runtime"),
    shell:
        "python -m sslzoo tables --metrics {input.metrics} --models {input.models} --runs {input.runs}"
        " --out {output.md} --html {output.html} > {log} 2>&1"


# How far each model is above the random-init row on the measures of config `learning_margins:`.
rule learning_margins:
    input:
        margins_metrics(),
    output:
        "results/tables/learning_margins.md",
    params:
        measures=margins_measures(),
        margin=margins_margin(),
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/tables/learning_margins.log",
    benchmark:
        "logs/benchmarks/tables/learning_margins.tsv"
    threads: res("tables", "threads")
    resources:
        mem_mb=res("tables", "mem_mb"),
        runtime=res("tables", "runtime"),
    shell:
        "python -m sslzoo learning-margins --metrics {input} --measures {params.measures}"
        " --margin {params.margin} --out {output} > {log} 2>&1"


# A published comparison table (config `comparison:`) with our numbers beside it; its rows'
# models run the benchmarks its protocols name (common.smk benchmark_models).
rule comparison_page:
    input:
        metrics=comparison_metrics,
        table=comparison_table(),
    output:
        md="results/tables/comparison.md",
        html=report(
            "results/tables/comparison.html",
            caption="../report/comparison.rst",
            category="Tables",
            subcategory="Comparison",
            labels={"page": "comparison"},
        ),
    params:
        models=ALL_MODELS,
        stand_ins=comparison_stand_ins,
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/tables/comparison.log",
    benchmark:
        "logs/benchmarks/tables/comparison.tsv"
    threads: res("tables", "threads")
    resources:
        mem_mb=res("tables", "mem_mb"),
        runtime=res("tables", "runtime"),
    shell:
        "python -m sslzoo comparison --table {input.table} --metrics {input.metrics} --models {params.models}"
        " {params.stand_ins} --out {output.md} --html {output.html} > {log} 2>&1"


rule loss_curve:
    input:
        "results/pretrain/{pretrained}/train_log.jsonl",
    output:
        report(
            "results/plots/loss/{pretrained}.svg",
            caption="../report/loss_curve.rst",
            category="Training loss",
            labels={"model": "{pretrained}"},
        ),
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/plots/loss/{pretrained}.log",
    benchmark:
        "logs/benchmarks/plots/loss/{pretrained}.tsv"
    threads: res("tables", "threads")
    resources:
        mem_mb=res("tables", "mem_mb"),
        runtime=res("tables", "runtime"),
    shell:
        "python -m sslzoo plot-loss --train-log {input} --title {wildcards.pretrained} --out {output} > {log} 2>&1"


rule k_plot:
    input:
        metrics=k_plot_metrics,
    output:
        report(
            "results/plots/{k_benchmark}.svg",
            caption="../report/k_plot.rst",
            category="Benchmarks against k",
            labels={"benchmark": "{k_benchmark}"},
        ),
    params:
        ylabel=k_plot_ylabel,
    conda:
        "../envs/sslzoo.yaml"
    log:
        "logs/plots/{k_benchmark}.log",
    benchmark:
        "logs/benchmarks/plots/{k_benchmark}.tsv"
    threads: res("tables", "threads")
    resources:
        mem_mb=res("tables", "mem_mb"),
        runtime=res("tables", "runtime"),
    shell:
        "python -m sslzoo plot-k --benchmark {wildcards.k_benchmark} --metrics {input.metrics}"
        " --ylabel '{params.ylabel}' --out {output} > {log} 2>&1"


# ---------------------------------------------------------------- targets
# `snakemake tables` (every page) and `snakemake plots` (every figure). One table or one method
# page is its file: `snakemake results/tables/benchmarks/knn_imagenet.md` runs only what the
# kNN table needs, `snakemake results/tables/byol.md` only what BYOL's page needs. A table or a
# method not in the config has no rule to make it (the `table` and `method` wildcards take the
# configured names only).


rule tables:
    input:
        all_tables(),
    default_target: False


rule page_comparison:
    input:
        comparison_pages(),
    default_target: False


rule plots:
    input:
        all_plots(),
    default_target: False
