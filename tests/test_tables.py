"""Tables as users save them: Excel's CSV dialects, IDs that went through a number format, labels in two spellings."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from fakecohort import make_feature_cohort
from slidepredict.cohort import build_cohort
from slidepredict.cohort.tables import read_table, sniff_separator
from slidepredict.core.errors import CohortError


@pytest.fixture()
def small(tmp_path: Path) -> tuple[Path, Path, Path]:
    clini, slides, feats, _ = make_feature_cohort(tmp_path, n_patients=8, n_tiles=10, dim=8)
    return clini, slides, feats


def _excel_csv(path: Path, df: pd.DataFrame, sep: str, encoding: str = "utf-8-sig") -> None:
    """What Excel writes: the given separator, CRLF line ends, a BOM (UTF-8) or Windows-1252."""
    path.write_bytes(df.to_csv(index=False, sep=sep, lineterminator="\r\n").encode(encoding))


@pytest.mark.parametrize(("sep", "encoding"), [(";", "utf-8-sig"), (";", "cp1252"), ("\t", "utf-8-sig"), (",", "utf-8")])
def test_csv_as_excel_saves_it(small: tuple[Path, Path, Path], sep: str, encoding: str) -> None:
    clini, slides, feats = small
    ct = pd.read_csv(clini, dtype=str).assign(SITE="Köln")  # a non-ASCII letter, as German tables have
    _excel_csv(clini, ct, sep, encoding)
    _excel_csv(slides, pd.read_csv(slides, dtype=str), sep, encoding)
    table = read_table(clini)
    assert list(table.columns) == ["PATIENT", "TARGET", "SITE"] and set(table.SITE) == {"Köln"}
    assert len(build_cohort(feats, slides, clini, target="TARGET")) == 8


def test_separator_inside_quotes_does_not_count() -> None:
    assert sniff_separator('"PATIENT;ID",TARGET\n"a;b",x\n') == ","
    assert sniff_separator("PATIENT\n1\n") == ","


def test_a_header_that_stays_one_column_says_so(small: tuple[Path, Path, Path]) -> None:
    clini, _, _ = small
    clini.write_text('"PATIENT;TARGET"\n"P1;pos"\n')
    with pytest.raises(CohortError) as e:
        read_table(clini)
    assert str(e.value) == (
        f"{clini} was read as a single column named 'PATIENT;TARGET'; its separator was not recognised "
        "(quotes around the whole header?); save it as CSV with one separator"
    )


def test_numeric_ids_written_as_decimals_match(small: tuple[Path, Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    clini, slides, feats = small
    st, ct = pd.read_csv(slides, dtype=str), pd.read_csv(clini, dtype=str)
    number = {p: str(i + 1) for i, p in enumerate(ct.PATIENT)}
    st.assign(PATIENT=st.PATIENT.map(number)).to_csv(slides, index=False)
    ct.assign(PATIENT=ct.PATIENT.map(lambda p: number[p] + ".0")).to_csv(clini, index=False)
    with caplog.at_level(logging.WARNING):
        cohort = build_cohort(feats, slides, clini, target="TARGET")
    assert sorted(cohort.patients, key=int) == [str(i) for i in range(1, 9)]
    assert "clini.csv: 8 PATIENT values look like numbers with a decimal part (e.g. '1.0'); read as integers ('1')" in caplog.text


def test_leading_zeros_are_kept(small: tuple[Path, Path, Path]) -> None:
    clini, slides, feats = small
    st, ct = pd.read_csv(slides, dtype=str), pd.read_csv(clini, dtype=str)
    number = {p: f"{i + 1:03d}" for i, p in enumerate(ct.PATIENT)}
    st.assign(PATIENT=st.PATIENT.map(number)).to_csv(slides, index=False)
    ct.assign(PATIENT=ct.PATIENT.map(number)).to_csv(clini, index=False)
    assert build_cohort(feats, slides, clini, target="TARGET").patients[0] == "001"


def _respell(clini: Path, n: int) -> None:
    """The first ``n`` 'pos' patients written 'POS ' (other case, a trailing space)."""
    ct = pd.read_csv(clini, dtype=str)
    rows = ct.index[ct.TARGET == "pos"][:n]
    ct.loc[rows, "TARGET"] = "POS "
    ct.to_csv(clini, index=False)


def test_labels_differing_only_in_case_are_an_error(small: tuple[Path, Path, Path]) -> None:
    clini, slides, feats = small
    _respell(clini, 1)
    with pytest.raises(CohortError) as e:
        build_cohort(feats, slides, clini, target="TARGET")
    assert str(e.value) == (
        "'TARGET' in clini.csv has values that differ only in letter case: 'POS' (1 patient) and 'pos' (3 patients); "
        "write one spelling, or declare the categories (--categories) to merge them"
    )


def test_declared_categories_merge_spellings(small: tuple[Path, Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    clini, slides, feats = small
    _respell(clini, 1)
    with caplog.at_level(logging.WARNING):
        cohort = build_cohort(feats, slides, clini, target="TARGET", categories=["neg", "pos"])
    assert cohort.categories == ["neg", "pos"] and cohort.class_counts() == {"neg": 4, "pos": 4}
    assert "'TARGET' in clini.csv: 'POS' read as the declared category 'pos'" in caplog.text


def test_empty_and_broken_text_tables(tmp_path: Path) -> None:
    empty, broken = tmp_path / "empty.csv", tmp_path / "broken.csv"
    empty.write_text("\n")
    broken.write_text('PATIENT,MSI\nA,"x\n')
    with pytest.raises(CohortError) as e:
        read_table(empty)
    assert str(e.value) == f"{empty} is empty; it needs a header row and one row per patient or slide"
    with pytest.raises(CohortError) as e:
        read_table(broken)
    assert str(e.value) == (f"{broken} is not a consistent table (Error tokenizing data. C error: EOF inside string "
                            "starting at row 1); check for unquoted separators in cells")


def test_a_row_longer_than_the_header_is_named(tmp_path: Path) -> None:
    path = tmp_path / "clini.csv"
    path.write_text("PATIENT,MSI\nP1,MSS\nP2,MSI-H,extra\n")
    with pytest.raises(CohortError) as e:
        read_table(path)
    assert str(e.value) == f"{path}: row 3 has 3 fields but the header has 2; quote cells that contain the separator"
    path.write_text("PATIENT,MSI\nP1,MSS,\n")  # a trailing empty field, as spreadsheets write, is fine
    assert list(read_table(path).PATIENT) == ["P1"]
