# Slide cohorts: included by workflows/Snakefile, which defines CFG, RUN, L, SLIDES, TARGETS, FOLDS and SP.


def final_outputs():
    out = [str(L.report)] if RUN.report.enabled else []
    out += [str(slide_h5_path(L.features, s)) for s in SLIDES]
    return out


# One job per slide: tissue detection and tiling (written to tiles/, with its QC image),
# then the embeddings; a rerun finds both complete.
rule extract:
    input:
        slide=lambda w: SLIDES[w.stem],
    output: str(slide_h5_path(L.features, "{stem}"))
    threads: 2
    resources: mem_mb=8000
    shell: "{SP} extract {input.slide:q} --config {CFG:q}"


rule fold:
    input: expand(str(slide_h5_path(L.features, "{stem}")), stem=SLIDES)
    output: str(L.fold_model("{target}", "{fold}"))
    threads: 2
    resources: mem_mb=16000
    shell: "{SP} crossval --config {CFG:q} --target {wildcards.target:q} --fold {wildcards.fold}"


rule crossval:
    input: lambda w: expand(str(L.fold_model(w.target, "{fold}")), fold=FOLDS)
    output: str(L.crossval_preds("{target}"))
    shell: "{SP} crossval --config {CFG:q} --target {wildcards.target:q}"


rule workflow_rest:
    input:
        expand(str(L.crossval_preds("{target}")), target=TARGETS) if FOLDS else [],
        expand(str(slide_h5_path(L.features, "{stem}")), stem=SLIDES),
    output: str(L.report)
    threads: 2
    shell: "{SP} run {CFG:q} --stage crossval --stage train --stage deploy --stage heatmaps --stage report"
