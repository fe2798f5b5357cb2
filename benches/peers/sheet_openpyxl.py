"""sheet-e2e peer: openpyxl in read-only mode reads the whole first sheet into
Python lists (values only).

Usage: python sheet_openpyxl.py FILE.xlsx — prints the row count and the
number of non-empty cells.
"""
import sys

from openpyxl import load_workbook

wb = load_workbook(sys.argv[1], read_only=True, data_only=True)
ws = wb.worksheets[0]
rows = [list(r) for r in ws.iter_rows(values_only=True)]
cells = sum(1 for r in rows for c in r if c is not None)
wb.close()
print(f"rows={len(rows) - 1} cells={cells}")
