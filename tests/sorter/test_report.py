from sorter.report import COLUMNS, CsvReport, Row, escape_cell, read_report, unescape_cell


def test_columns_follow_the_design():
    assert COLUMNS == ["time", "source", "destination", "action", "species", "confidence", "top3", "sha256",
                       "model", "error"]


def test_formula_cells_are_escaped_and_round_trip():
    for cell in ["=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "\tx", "\rx", "'quoted", "plain", ""]:
        escaped = escape_cell(cell)
        assert not escaped.startswith(("=", "+", "-", "@", "\t", "\r"))
        assert unescape_cell(escaped) == cell


def test_report_rows_round_trip_with_odd_names(tmp_path):
    path = tmp_path / "r.csv"
    rows = [Row("t", "=cmd|' /C calc'!A0.jpg", "/lib/S/a b\nc.jpg", "moved", "S", 0.5, "S 0.5000", "ab", "m@x", ""),
            Row("t", "/in/b.jpg", "", "rejected", error="cannot decode: \"quoted\", comma")]
    report = CsvReport(path)
    report.record(rows, [])
    report.close()
    back = read_report(path)
    assert [(r.source, r.destination, r.action, r.confidence, r.error) for r in back] == \
        [(r.source, r.destination, r.action, r.confidence, r.error) for r in rows]
    assert "\n=cmd" not in path.read_text() and ",=cmd" not in path.read_text()


def test_a_torn_row_is_cut_and_dedupe_skips_rows_already_there(tmp_path):
    path = tmp_path / "r.csv"
    report = CsvReport(path)
    a = Row("t", "/in/a\n.jpg", "/lib/a.jpg", "moved")
    b = Row("t", "/in/b.jpg", "/lib/b.jpg", "moved")
    report.record([a], [])
    report.close()
    with open(path, "ab") as f:
        f.write(b't,"/in/b\nhalf')  # killed mid-row, inside a quoted field with a newline
    assert [r.source for r in read_report(path)] == ["/in/a\n.jpg"]
    again = CsvReport(path, dedupe=True)
    again.record([a, b], [])
    again.close()
    assert [r.source for r in read_report(path)] == ["/in/a\n.jpg", "/in/b.jpg"]
