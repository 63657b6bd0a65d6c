# Image cohorts (a cells: section): included by workflows/Snakefile, which defines CFG, RUN, L and SP.
#
# One job per plate embeds that plate's images (`slidepredict cells --plate`), first of the
# training cohort, then of the deploy: plate(s) with the grey levels the training cohort recorded
# (as `run` does); a marker file per plate says the job finished. `run` then does the rest and
# re-embeds nothing that is complete.

from slidepredict.cells.table import PLATE, read_image_table
from slidepredict.layout import NORM_FILE


def plates_of(table, images):
    """The PLATE values of an image table ('' when it has no PLATE column: the whole table is one job)."""
    df = read_image_table(table, images, plate_wells=RUN.cells.plate_format).table
    return sorted(df[PLATE].dropna().astype(str).unique()) if PLATE in df.columns else [""]


def plate_flag(plate):
    return f"--plate {shlex.quote(plate)}" if plate else ""


C = RUN.cells
REF_PLATES = plates_of(C.table, C.images)
EXT_PLATES = plates_of(RUN.deploy.slide_table, RUN.deploy.slides_dir) if RUN.deploy is not None else []
# a deploy: plate is embedded like the training images: with their recorded range unless the config fixes one
SAME_RANGE = (f"--intensity-from {shlex.quote(str(L.cells / NORM_FILE))}"
              if C.scope == "cohort" and C.intensity_range is None and C.intensity_from is None else "")
EXT_IMAGES = ("" if RUN.deploy is None else
              f"--images {shlex.quote(str(RUN.deploy.slides_dir))} --image-table {shlex.quote(str(RUN.deploy.slide_table))}")


def marker(folder, plate):
    return str(folder / "plates" / f"{plate or 'all'}.done")


def final_outputs():
    out = [str(L.report)] if RUN.report.enabled else []
    return out + [marker(L.cells, p) for p in REF_PLATES] + [marker(L.external_cells, p) for p in EXT_PLATES]


rule cells_plate:
    output: touch(marker(L.cells, "{plate}"))
    threads: 2
    resources: mem_mb=8000
    params: plate=lambda w: plate_flag("" if w.plate == "all" else w.plate)
    shell: "{SP} cells --config {CFG:q} {params.plate} --out {L.cells:q}"


rule external_plate:
    input: [marker(L.cells, p) for p in REF_PLATES]  # the training images' range comes first
    output: touch(marker(L.external_cells, "{plate}"))
    threads: 2
    resources: mem_mb=8000
    params: plate=lambda w: plate_flag("" if w.plate == "all" else w.plate)
    shell: "{SP} cells --config {CFG:q} " + EXT_IMAGES + " " + SAME_RANGE + " {params.plate} --out {L.external_cells:q}"


rule workflow_rest:
    input: final_outputs()[1:] if RUN.report.enabled else final_outputs()
    output: str(L.report)
    threads: 2
    shell: "{SP} run {CFG:q} --stage extract --stage crossval --stage train --stage deploy --stage screen --stage clusters --stage report"
