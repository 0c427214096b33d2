# Semantic prior (paper Sup. Mat. B): render scans, parse views, accumulate visible-face labels.


rule render_scan_views:
    input:
        obj=get_scan_file("obj"),
        fit=get_scan_file("pkl"),
        models=get_body_model_files(),
        code=get_script_code("render_scan_views.py"),
    output:
        views="results/prior/views/{scan}.npz",
        strip="results/prior/views/{scan}.png",
    log:
        "logs/prior/render_scan_views/{scan}.log",
    benchmark:
        "benchmarks/prior/render_scan_views/{scan}.tsv"
    conda:
        "../../envs/prior.yaml"
    resources:
        mem_mb=3000,
    params:
        settings=canonical(lookup(dpath="prior/views", within=config)),
        seed=lookup(dpath="seed", within=config),
    script:
        "../scripts/render_scan_views.py"


rule parse_scan_views:
    input:
        unpack(get_scan_parser_inputs),
        views=rules.render_scan_views.output.views,
        models=get_body_model_files(),
        code=get_script_code("parse_scan_views.py"),
    output:
        labels="results/prior/parsing/{scan}.npz",
        counts="results/prior/counts/{scan}.npz",
    log:
        "logs/prior/parse_scan_views/{scan}.log",
    benchmark:
        "benchmarks/prior/parse_scan_views/{scan}.tsv"
    conda:
        "../../envs/prior.yaml"
    params:
        parser=get_parser_params("prior"),
    script:
        "../scripts/parse_scan_views.py"


rule accumulate_prior:
    input:
        counts=expand("results/prior/counts/{scan}.npz", scan=get_scan_names()),
        models=get_body_model_files(),
        code=get_script_code("accumulate_prior.py"),
    output:
        prior="results/prior/semantic_prior.npz",
        report="results/prior/prior_report.json",
    log:
        "logs/prior/accumulate_prior.log",
    benchmark:
        "benchmarks/prior/accumulate_prior.tsv"
    conda:
        "../../envs/prior.yaml"
    params:
        background_prob=lookup(dpath="prior/background_prob", within=config),
        rules=canonical(lookup(dpath="prior/cleaning_rules", within=config)),
        parser=lookup(dpath="prior/parser/backend", within=config),
    script:
        "../scripts/accumulate_prior.py"


rule plot_prior:
    input:
        prior=rules.accumulate_prior.output.prior,
        models=get_body_model_files(),
        code=get_script_code("plot_prior.py"),
    output:
        views=report(
            "results/prior/prior_views.png",
            caption="../report/prior_views.rst",
            category="Semantic prior",
        ),
        heatmaps=report(
            "results/prior/prior_heatmaps.png",
            caption="../report/prior_heatmaps.rst",
            category="Semantic prior",
        ),
    log:
        "logs/prior/plot_prior.log",
    conda:
        "../../envs/prior.yaml"
    script:
        "../scripts/plot_prior.py"
