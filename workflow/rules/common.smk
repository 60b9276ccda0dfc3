# Config validation, wildcard constraints, input functions and target builders.
# Rules stay declarative: everything computed from the config is a named function here.

import os
import re

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from sslzoo.benchmarks.protocol_files import read_protocol
from sslzoo.benchmarks.registry import BENCHMARKS, check_model_benchmarks, of_kind, table_of
from sslzoo.benchmarks.repeats import run_seed
from sslzoo.comparison import load_comparison, metrics_needed
from sslzoo.config import check_snapshots, snapshot_name, training_config
from sslzoo.cpu_kernels import kernel_env
from sslzoo.errors import SslzooError


validate(config, schema="../schemas/config.schema.yaml", set_default=True)

# The CPU kernels of every job (config `cpu_kernels`): jobs inherit this environment, locally
# and through sbatch; a variable the user has set already wins.
for _name, _value in kernel_env(config["cpu_kernels"]).items():
    os.environ.setdefault(_name, _value)

MODEL_SCHEMA = os.path.join(workflow.basedir, "src", "sslzoo", "schemas", "model.schema.yaml")


def load_yaml(path):
    with open(path) as handle:
        return yaml.safe_load(handle)


def _fail(key, message):
    raise WorkflowError(f"config key '{key}': {message}")


def _load_model_config(name, key):
    """config/models/<name>.yaml, validated against the model schema; `key` names the config
    key that asked for it (in error messages)."""
    path = os.path.join("config", "models", f"{name}.yaml")
    if not os.path.isfile(path):
        _fail(key, f"'{name}' has no config file {path}; add it or remove the name")
    model_cfg = load_yaml(path)
    try:
        validate(model_cfg, schema=MODEL_SCHEMA, set_default=True)
    except WorkflowError as err:
        raise WorkflowError(f"{path}: invalid model config", err)
    try:
        check_model_benchmarks(model_cfg["extra_benchmarks"], list(model_cfg["reported"]), path)
        check_snapshots(model_cfg, path)
        for snapshot in model_cfg["snapshots"]:
            where = f"{path}: snapshot epoch {snapshot['epoch']}"
            check_model_benchmarks(snapshot["extra_benchmarks"], list(snapshot["reported"]), where)
    except SslzooError as err:
        raise WorkflowError(str(err))
    if model_cfg["dataset"] not in config["datasets"]:
        _fail(
            "datasets",
            f"model '{name}' pretrains on '{model_cfg['dataset']}' ({path}), which is not "
            f"configured; add datasets: {model_cfg['dataset']}: train: images: <folder>",
        )
    return model_cfg


def _load_model_configs():
    """Every model in `models`, plus the stage-1 model each ORL model names (`stage1:`)."""
    configs = {name: _load_model_config(name, "models") for name in config["models"]}
    for name, model_cfg in list(configs.items()):
        stage1 = model_cfg.get("stage1")
        if stage1 and stage1 not in configs:
            configs[stage1] = _load_model_config(stage1, f"stage1 of config/models/{name}.yaml")
    return configs


def _check_protocol(path, kind, key):
    """Validate protocol file `path` against the schema of its `kind` (sslzoo/schemas/), as the
    step will again; `key` names the config key that asked for it. Returns the values with the
    schema's defaults filled."""
    try:
        return read_protocol(path, kind)[1]
    except SslzooError as err:
        _fail(key, f"invalid protocol file {path}:\n{err}")


def _check_protocols():
    """Every protocol file the workflow uses, validated before any job: the features config, the
    protocol of each benchmark, and the features config whose pooling table a linear protocol names."""
    _check_protocol(config["features"], "features", "features")
    for bench, path in config["benchmarks"].items():
        protocol = _check_protocol(path, BENCHMARKS[bench].kind, f"benchmarks.{bench}")
        if BENCHMARKS[bench].kind == "linear" and "pooling_from" in protocol:
            pooling_from = os.path.join(os.path.dirname(path), protocol["pooling_from"])
            _check_protocol(pooling_from, "features", f"benchmarks.{bench} (pooling_from)")


# dataset keys that name folders / files, as in workflow/schemas/config.schema.yaml
FOLDER_KEYS = ("images", "devkit", "root")
FILE_KEYS = ("list", "json", "annotations")


def _dataset_paths(node, key):
    """(config key, path, is_folder) for every path under config `datasets:`."""
    for name, value in node.items():
        where = f"{key}.{name}"
        if isinstance(value, dict):
            yield from _dataset_paths(value, where)
        elif value and name in FOLDER_KEYS + FILE_KEYS:
            yield where, value, name in FOLDER_KEYS


def _check_files():
    """Benchmarks must be registered, protocol files and real dataset folders must exist before any job runs."""
    for bench in config["benchmarks"]:
        if bench not in BENCHMARKS:
            _fail(
                f"benchmarks.{bench}",
                f"not a benchmark of sslzoo; the benchmarks are {', '.join(BENCHMARKS)} "
                "(registered in src/sslzoo/benchmarks/registry.py)",
            )
    for key in ["features"]:
        if not os.path.isfile(config[key]):
            _fail(key, f"protocol file {config[key]} does not exist")
    for bench, path in config["benchmarks"].items():
        if not os.path.isfile(path):
            _fail(f"benchmarks.{bench}", f"protocol file {path} does not exist")
        for dataset in BENCHMARKS[bench].datasets:
            if dataset not in config["datasets"]:
                _fail("datasets", f"benchmark '{bench}' reads dataset '{dataset}', which is not configured")
    for stage, path in config["orl"]["published"].items():
        if path and not os.path.isfile(path):
            _fail(f"orl.published.{stage}", f"file {path} does not exist; fix the path or remove the key to run the stage")
    for name, path in config["external"].items():
        if name in MODEL_CONFIGS or name in SNAPSHOTS or name == "random":
            _fail(f"external.{name}", "the name is already a pretrained model, a kept epoch's model (snapshots:) or the random baseline; rename it")
        if not os.path.isfile(path):
            _fail(f"external.{name}", f"checkpoint {path} does not exist")
    if not config.get("mini_data"):  # the mini datasets are generated by the make_mini_data rule
        for key, path, is_folder in _dataset_paths(config["datasets"], "datasets"):
            if is_folder and not os.path.isdir(path):
                _fail(key, f"folder {path} does not exist; point it at your copy of the dataset")
            if not is_folder and not os.path.isfile(path):
                _fail(key, f"file {path} does not exist; point it at your copy of the dataset")
    for bench in config["benchmarks"]:
        protocol = config["benchmarks"][bench]
        split_file = load_yaml(protocol).get("split_file") if BENCHMARKS[bench].kind == "semi" else None
        if split_file and not os.path.isfile(split_file):
            _fail(
                f"benchmarks.{bench}",
                f"its protocol {config['benchmarks'][bench]} names the subset list {split_file} (SimCLR's "
                f"standard split), which does not exist; put the file there or set split_file: null "
                f"for a seeded class-balanced subset",
            )


def _snapshots():
    """snapshot model name -> (pretrained model, its `snapshots:` entry), for the listed models:
    the checkpoint of an epoch that is a model of its own (`<model>_ep<epoch>`)."""
    out = {}
    for parent in config["models"]:
        for snapshot in MODEL_CONFIGS[parent]["snapshots"]:
            name = snapshot_name(parent, snapshot["epoch"])
            if name in MODEL_CONFIGS:
                _fail("models", f"'{name}' is both a model and the snapshot of epoch {snapshot['epoch']} of '{parent}'; rename one")
            out[name] = (parent, snapshot)
    return out


MODEL_CONFIGS = _load_model_configs()
SNAPSHOTS = _snapshots()
_check_files()
_check_protocols()

PRETRAINED = list(config["models"])  # benchmarked and in the tables
# pretrained, benchmarked or not (ORL's stage-1 models only feed its stage 2)
PRETRAINABLE = list(MODEL_CONFIGS)
ORL_MODELS = [name for name in PRETRAINED if MODEL_CONFIGS[name]["method"] == "orl"]
EXTERNAL = list(config["external"])
BASELINES = ["random"] if config["baseline"]["enabled"] else []
ALL_MODELS = PRETRAINED + list(SNAPSHOTS) + EXTERNAL + BASELINES
METHODS = sorted({MODEL_CONFIGS[name]["method"] for name in PRETRAINED})


def _alternatives(names):
    """A regex matching exactly these names (never empty, so a rule with none matches nothing)."""
    return "|".join(map(re.escape, names)) if names else "(?!x)x"


LIST_DATASETS = [name for name in ("imagenet", "places205") if name in config["datasets"]]
BENCHMARK_NAMES = list(config["benchmarks"])
LINEAR_BENCHMARKS = of_kind(BENCHMARK_NAMES, "linear")
SEMI_BENCHMARKS = of_kind(BENCHMARK_NAMES, "semi")
DET_BENCHMARKS = of_kind(BENCHMARK_NAMES, "det")
# a detection protocol's `repeats` (schema default 1): one `detection` job writes the metrics
# of a protocol run once; a repeated one has a `detection_run` job per run and `detection_average`
DET_REPEATS = {
    name: _check_protocol(config["benchmarks"][name], "det", f"benchmarks.{name}")["repeats"]
    for name in DET_BENCHMARKS
}
DET_SINGLE = [name for name in DET_BENCHMARKS if DET_REPEATS[name] == 1]
DET_REPEATED = [name for name in DET_BENCHMARKS if DET_REPEATS[name] > 1]
SEG_BENCHMARKS = of_kind(BENCHMARK_NAMES, "seg")

# the benchmark tables (a benchmark's numbers may be columns of another's table)
TABLES = list(dict.fromkeys(table_of(name) for name in BENCHMARK_NAMES))
# benchmarks whose table columns are k=N: plotted against k in the report
K_PLOTS = [name for name in BENCHMARK_NAMES if BENCHMARKS[name].k_label]


def _comparison_pairs():
    """(benchmark, model) of every number of the comparison page our zoo can show: the rows'
    models (or their stand-ins) that are in the zoo, under the rows' protocols that it runs."""
    if "comparison" not in config:
        return []
    try:
        page = load_comparison(config["comparison"]["table"])
    except SslzooError as err:
        _fail("comparison", str(err))
    return metrics_needed(page, ALL_MODELS, BENCHMARK_NAMES, config["comparison"]["stand_ins"])


COMPARISON_PAIRS = _comparison_pairs()


wildcard_constraints:
    model=_alternatives(ALL_MODELS),
    pretrained=_alternatives(PRETRAINABLE),
    snapshot=_alternatives(list(SNAPSHOTS)),
    orl_model=_alternatives(ORL_MODELS),
    scatteritem="[0-9]+-of-[0-9]+",
    external=_alternatives(EXTERNAL),
    dataset=_alternatives(list(config["datasets"])),
    list_dataset=_alternatives(LIST_DATASETS),
    linear=_alternatives(LINEAR_BENCHMARKS),
    semi=_alternatives(SEMI_BENCHMARKS),
    det=_alternatives(DET_SINGLE),
    det_repeated=_alternatives(DET_REPEATED),
    repeat="[0-9]+",
    seg=_alternatives(SEG_BENCHMARKS),
    table=_alternatives(TABLES),
    method=_alternatives(METHODS),
    k_benchmark=_alternatives(K_PLOTS),
    split="[A-Za-z0-9]+",
    lr="[0-9.e-]+",
    mult="[0-9.e-]+",


# ---------------------------------------------------------------- resources

RESOURCE_DEFAULTS = {
    # GPU jobs: gpu count, CPU cores per GPU for data loading, host memory, minutes
    "pretrain": {"cpus_per_gpu": 8, "threads": 8, "mem_mb": 64000, "runtime": 4320},
    "extract_features": {"gpu": 1, "cpus_per_gpu": 8, "threads": 8, "mem_mb": 32000, "runtime": 240},
    # CPU jobs
    "make_mini_data": {"threads": 1, "mem_mb": 2000, "runtime": 30},
    "manifest": {"threads": 1, "mem_mb": 8000, "runtime": 60},
    "extract_backbone": {"threads": 1, "mem_mb": 8000, "runtime": 30},
    "linear": {"gpu": 1, "cpus_per_gpu": 8, "threads": 8, "mem_mb": 64000, "runtime": 2880},
    "semi": {"gpu": 1, "cpus_per_gpu": 8, "threads": 8, "mem_mb": 64000, "runtime": 1440},
    "knn": {"threads": 4, "mem_mb": 32000, "runtime": 120},
    "svm": {"threads": 8, "mem_mb": 32000, "runtime": 240},
    # ORL stage 2: KNN retrieval and correspondence on GPUs, selective search on CPUs
    "orl_knn": {"gpu": 1, "cpus_per_gpu": 8, "threads": 8, "mem_mb": 64000, "runtime": 240},
    "orl_proposals": {"threads": 1, "mem_mb": 4000, "runtime": 1440},
    "orl_correspondence": {"gpu": 1, "cpus_per_gpu": 8, "threads": 8, "mem_mb": 64000, "runtime": 1440},
    "orl_merge": {"threads": 1, "mem_mb": 32000, "runtime": 120},
    # detection and segmentation: the 8-GPU protocols (total batch 16) of the references
    "detection": {"gpu": 8, "cpus_per_gpu": 4, "threads": 4, "mem_mb": 128000, "runtime": 1440},
    "segmentation": {"gpu": 4, "cpus_per_gpu": 4, "threads": 4, "mem_mb": 64000, "runtime": 1440},
    "tables": {"threads": 1, "mem_mb": 2000, "runtime": 10},
}


def res(rule_name, key):
    """Resource `key` of `rule_name`: config `resources:` overrides RESOURCE_DEFAULTS."""
    return config["resources"].get(rule_name, {}).get(key, RESOURCE_DEFAULTS[rule_name][key])


def pretrain_gpus(wildcards):
    """DDP processes for pretraining: the model config's `gpus` (the 8 in 8xb64)."""
    return config["resources"].get("pretrain", {}).get("gpu", MODEL_CONFIGS[wildcards.pretrained]["gpus"])


# ---------------------------------------------------------------- inputs and params


def mini_data_marker(wildcards):
    """The mini-data summary when datasets are generated, else nothing (real folders)."""
    return "resources/mini/summary.json" if config.get("mini_data") else []


def mini_data_seed():
    return config["mini_data"]["seed"] if config.get("mini_data") else 0


def manifest_images(wildcards):
    return config["datasets"][wildcards.list_dataset][wildcards.split]["images"]


def manifest_list_arg(wildcards):
    listed = config["datasets"][wildcards.list_dataset][wildcards.split]["list"]
    return f"--list {listed}" if listed else ""


def voc_devkit(wildcards):
    return config["datasets"]["voc07"]["devkit"]


def coco_images(wildcards):
    return config["datasets"]["coco"][wildcards.split]["images"]


def coco_annotations(wildcards):
    return config["datasets"]["coco"][wildcards.split]["annotations"]


def inat_json(wildcards):
    return config["datasets"]["inat18"][wildcards.split]["json"]


def inat_images(wildcards):
    return config["datasets"]["inat18"][wildcards.split]["images"]


def pretrain_manifest(wildcards):
    return f"resources/manifests/{MODEL_CONFIGS[wildcards.pretrained]['dataset']}_train.json"


def pretrain_correspondence(wildcards):
    """Input function: ORL stage 3 trains on the correspondence file; other methods need none."""
    if MODEL_CONFIGS[wildcards.pretrained]["method"] != "orl":
        return []
    return config["orl"]["published"].get("correspondence") or f"results/orl/{wildcards.pretrained}/correspondence.json"


def pretrain_correspondence_arg(wildcards, input):
    return f"--correspondence {input.correspondence}" if input.correspondence else ""


def pretrain_protocol(wildcards):
    """The model config's training values (sslzoo.config.training_config, the same the run's
    resume check compares): a change to any of them reruns the pretraining, a new reported
    number, extra benchmark or kept epoch does not."""
    return training_config(MODEL_CONFIGS[wildcards.pretrained])


def snapshot_final(wildcards):
    """Input function: the final checkpoint of the snapshot's run (the run is finished)."""
    return f"results/pretrain/{SNAPSHOTS[wildcards.snapshot][0]}/final.pth"


def snapshot_work_dir(wildcards):
    """Params function: the work folder where the snapshot's run kept its epoch checkpoints."""
    return f"results/pretrain/{SNAPSHOTS[wildcards.snapshot][0]}/work"


def snapshot_epoch(wildcards):
    return SNAPSHOTS[wildcards.snapshot][1]["epoch"]


def output_dir(wildcards, output):
    """Params function: the folder of the rule's first output."""
    return os.path.dirname(output[0])


def external_checkpoint(wildcards):
    return config["external"][wildcards.external]


def protocol_file(benchmark):
    """Input function: the protocol file of `benchmark`, as named in config `benchmarks:`."""

    def _protocol_file(wildcards):
        return config["benchmarks"][benchmark]

    return _protocol_file


def protocol_values(benchmark):
    """Params function: the protocol's values, so `--list-changes params` sees an edit."""

    def _protocol_values(wildcards):
        return load_yaml(config["benchmarks"][benchmark])

    return _protocol_values


# the wildcards that name a benchmark in the rules whose output path holds one
BENCHMARK_WILDCARDS = ("linear", "semi", "det", "det_repeated", "seg")


def _benchmark(wildcards):
    """The benchmark a job of the linear, semi, detection or segmentation rule runs."""
    return next(getattr(wildcards, name) for name in BENCHMARK_WILDCARDS if hasattr(wildcards, name))


def benchmark_manifest(split):
    """Input function: the `split` manifest of the benchmark's dataset."""

    def _benchmark_manifest(wildcards):
        return f"resources/manifests/{BENCHMARKS[_benchmark(wildcards)].datasets[0]}_{split}.json"

    return _benchmark_manifest


def benchmark_protocol(wildcards):
    """Input function: the protocol file of the job's benchmark (config `benchmarks:`)."""
    return config["benchmarks"][_benchmark(wildcards)]


def benchmark_protocol_values(wildcards):
    """Params function: the protocol's values, so `--list-changes params` sees an edit."""
    return load_yaml(benchmark_protocol(wildcards))


def linear_pooling(wildcards):
    """The features config whose pooling table the linear protocol names (`pooling_from`)."""
    protocol = benchmark_protocol(wildcards)
    pooling_from = load_yaml(protocol).get("pooling_from")  # absent for the AvgPool protocol
    return os.path.normpath(os.path.join(os.path.dirname(protocol), pooling_from)) if pooling_from else []


def semi_split_file(wildcards):
    """The protocol's standard subset list (SimCLR's 1percent.txt), if it names one."""
    return load_yaml(benchmark_protocol(wildcards)).get("split_file") or []


def semi_runs(wildcards):
    """One fine-tuning job per (lr, head multiplier) of the protocol's grid."""
    grid = load_yaml(benchmark_protocol(wildcards))
    return expand(
        "results/benchmarks/{semi}/{model}/lr{lr}_head{mult}/metrics.json",
        semi=wildcards.semi,
        model=wildcards.model,
        lr=grid["lrs"],
        mult=grid["head_mults"],
    )


def detection_data(wildcards):
    """Params function: the dataset arguments of the detection step (folders from `datasets:`)."""
    data = config["datasets"]
    if BENCHMARKS[_benchmark(wildcards)].datasets == ("voc07", "voc12"):
        return f"--voc07 {data['voc07']['devkit']} --voc12 {data['voc12']['devkit']}"
    coco = data["coco"]
    return (
        f"--coco-images-train {coco['train']['images']} --coco-ann-train {coco['train']['annotations']}"
        f" --coco-images-val {coco['val']['images']} --coco-ann-val {coco['val']['annotations']}"
    )


def detection_run_seed(wildcards):
    """Params function: the seed of run {repeat} of a repeated detection protocol (config `seed` +
    the run's index, sslzoo.benchmarks.repeats.run_seed)."""
    return run_seed(config["seed"], int(wildcards.repeat))


def detection_runs(wildcards):
    """Input function: the metrics of every run of the repeated detection protocol."""
    return expand(
        "results/benchmarks/{det_repeated}/{model}/run{repeat}/metrics.json",
        det_repeated=wildcards.det_repeated,
        model=wildcards.model,
        repeat=range(DET_REPEATS[wildcards.det_repeated]),
    )


def segmentation_data(wildcards):
    """Params function: the dataset argument of the segmentation step."""
    data = config["datasets"]
    if wildcards.seg == "seg_voc12aug":
        return f"--voc12 {data['voc12']['devkit']}"
    return f"--cityscapes {data['cityscapes']['root']}"


def orl_config(wildcards):
    return f"config/models/{wildcards.orl_model}.yaml"


def orl_stage1_checkpoint(wildcards):
    """The final checkpoint of the ORL model's stage-1 (image-level BYOL) model."""
    return f"results/pretrain/{MODEL_CONFIGS[wildcards.orl_model]['stage1']}/final.pth"


def orl_manifest(wildcards):
    """The train manifest of the ORL model's dataset (COCO train2017 in the reference)."""
    return f"resources/manifests/{MODEL_CONFIGS[wildcards.orl_model]['dataset']}_train.json"


def orl_protocol(wildcards):
    """Params function: the stage-2 protocol, so that an edit reruns stage 2."""
    return MODEL_CONFIGS[wildcards.orl_model]["stage2"]


def orl_knn(wildcards):
    """The KNN file: the reference's published one when config `orl.published.knn` names it."""
    return config["orl"]["published"].get("knn") or f"results/orl/{wildcards.orl_model}/knn.json"


def orl_proposals(wildcards):
    """The merged selective-search proposals of the ORL model's dataset, or the published file."""
    dataset = MODEL_CONFIGS[wildcards.orl_model]["dataset"]
    return config["orl"]["published"].get("proposals") or f"results/orl/{dataset}/proposals.json"


def orl_proposal_shards(wildcards):
    return gather.orl_proposals(f"results/orl/{wildcards.dataset}/proposals/{{scatteritem}}.json")


def orl_correspondence_shards(wildcards):
    return gather.orl_correspondence(f"results/orl/{wildcards.orl_model}/correspondence/{{scatteritem}}.json")


def features_protocol(wildcards):
    return load_yaml(config["features"])


# ---------------------------------------------------------------- targets


def _extra_benchmarks(name):
    """A pretrained model's or a snapshot's own `extra_benchmarks:` (a snapshot lists its own)."""
    return SNAPSHOTS[name][1]["extra_benchmarks"] if name in SNAPSHOTS else MODEL_CONFIGS[name]["extra_benchmarks"]


def benchmark_models(benchmark):
    """The models a benchmark runs for: all of them for the zoo's common protocols; for a paper's
    own protocol (registry `every_model=False`) the pretrained models and snapshots that list it
    under `extra_benchmarks:` in their config, and the models the comparison page shows under it."""
    if BENCHMARKS[benchmark].every_model:
        return ALL_MODELS
    shown = {model for bench, model in COMPARISON_PAIRS if bench == benchmark}
    return [
        name
        for name in ALL_MODELS
        if name in shown or (name in PRETRAINED + list(SNAPSHOTS) and benchmark in _extra_benchmarks(name))
    ]


def benchmark_results(benchmark):
    return expand("results/benchmarks/{benchmark}/{model}/metrics.json", benchmark=benchmark, model=benchmark_models(benchmark))


def all_benchmark_results():
    return [path for bench in config["benchmarks"] for path in benchmark_results(bench)]


def model_config_files():
    return expand("config/models/{model}.yaml", model=PRETRAINED)


def table_metrics(wildcards):
    """Input function: every metrics file of the benchmarks shown in table `{table}`."""
    return [
        path
        for bench in config["benchmarks"]
        if table_of(bench) == wildcards.table
        for path in benchmark_results(bench)
    ]


def _method_models(method):
    return [name for name in PRETRAINED if MODEL_CONFIGS[name]["method"] == method]


def method_metrics(wildcards):
    """Input function: the metrics of the method's models, their snapshots and the baseline,
    every benchmark each runs for."""
    models = _method_models(wildcards.method)
    models = set(models + [name for name, (parent, _) in SNAPSHOTS.items() if parent in models] + BASELINES)
    return [
        f"results/benchmarks/{bench}/{model}/metrics.json"
        for bench in config["benchmarks"]
        for model in benchmark_models(bench)
        if model in models
    ]


def method_model_configs(wildcards):
    return expand("config/models/{model}.yaml", model=_method_models(wildcards.method))


def pretrain_runs(wildcards):
    """Input function: the pretraining run records (run.json) of the pretrained models a page
    shows, for its footnotes: the method's models on a method page, every pretrained model on
    the others (external checkpoints and `random` have none)."""
    models = _method_models(wildcards.method) if hasattr(wildcards, "method") else PRETRAINED
    return expand("results/pretrain/{model}/run.json", model=models)


def k_plot_metrics(wildcards):
    return benchmark_results(wildcards.k_benchmark)


def k_plot_ylabel(wildcards):
    return BENCHMARKS[wildcards.k_benchmark].k_label


def comparison_metrics(wildcards):
    """Input function: the metrics of every number of the comparison page."""
    return [f"results/benchmarks/{bench}/{model}/metrics.json" for bench, model in COMPARISON_PAIRS]


def comparison_table():
    return config["comparison"]["table"] if "comparison" in config else []


def comparison_stand_ins(wildcards):
    """Params function: the --stand-in arguments (row model=the model run in its place)."""
    stand_ins = config.get("comparison", {}).get("stand_ins", {})
    return " ".join(f"--stand-in {full}={mini}" for full, mini in stand_ins.items())


def comparison_pages():
    """The comparison page (markdown and HTML) when the config names one, else nothing."""
    return ["results/tables/comparison.md", "results/tables/comparison.html"] if "comparison" in config else []


def _check_learning_margins():
    """Each `learning_margins.measures` benchmark is a registered one that every model runs."""
    for benchmark in config.get("learning_margins", {}).get("measures", {}):
        if benchmark not in BENCHMARKS or not BENCHMARKS[benchmark].every_model:
            _fail("learning_margins", f"measure '{benchmark}' is not a benchmark that every model runs")


_check_learning_margins()


def learning_measures():
    """The `learning_margins.measures` whose benchmarks this config runs: a config reduced to a
    few benchmarks (one table, a test run) keeps the page for those."""
    measures = config.get("learning_margins", {}).get("measures", {})
    return {bench: column for bench, column in measures.items() if bench in config["benchmarks"]}


def margins_margin():
    """`learning_margins.margin` (0 when the page is not configured)."""
    return config["learning_margins"]["margin"] if "learning_margins" in config else 0


def margins_metrics():
    """Every metrics file the learning-margins page reads (none when it is not configured)."""
    return [path for bench in learning_measures() for path in benchmark_results(bench)]


def margins_measures():
    """The measures as the step's BENCHMARK=COLUMN arguments."""
    return " ".join(f"'{bench}={column}'" for bench, column in learning_measures().items())


def margins_pages():
    """The learning-margins page when the config asks for one, runs the random-init row and at
    least one of its measures; else nothing."""
    return ["results/tables/learning_margins.md"] if config["baseline"]["enabled"] and learning_measures() else []


def all_tables():
    """Every page: model_zoo, one per method, one per benchmark table (markdown and HTML), the
    comparison page and the learning-margins page when the config names them."""
    pages = ["results/tables/model_zoo"]
    pages += expand("results/tables/{method}", method=METHODS)
    pages += expand("results/tables/benchmarks/{table}", table=TABLES)
    return [page + ext for page in pages for ext in (".md", ".html")] + comparison_pages() + margins_pages()


def all_plots():
    """The report's figures: a loss curve per pretrained model, each k=N benchmark against k."""
    # an ORL stage-1 model is trained only when the stage-2 correspondence is not published
    stage1 = [] if config["orl"]["published"].get("correspondence") else [MODEL_CONFIGS[m]["stage1"] for m in ORL_MODELS]
    trained = list(dict.fromkeys(PRETRAINED + stage1))
    return expand("results/plots/loss/{model}.svg", model=trained) + expand(
        "results/plots/{benchmark}.svg", benchmark=K_PLOTS
    )
