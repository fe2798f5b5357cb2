"""sheet-e2e peer: python-calamine reads the whole first sheet into Python lists.

Usage: python sheet_calamine.py FILE.xlsx — prints the row count and the
number of non-empty cells (so the work cannot be skipped).
"""
import sys

from python_calamine import CalamineWorkbook

wb = CalamineWorkbook.from_path(sys.argv[1])
rows = wb.get_sheet_by_index(0).to_python()
cells = sum(1 for r in rows for c in r if c != "" and c is not None)
print(f"rows={len(rows) - 1} cells={cells}")
