"""Writes a small xlsx that inflates to something huge (for sheet.read limits).

usage: hostile_xlsx.py OUT.xlsx string|rows|cell
  string: one shared string of 1 GiB (file about 1 MB)
  rows:   30,000,000 rows of one cell (file about 2-3 MB)
  cell:   one shared string of 4 MiB (over the per-cell limit, under the part limit)
"""
import sys
import zipfile

out, kind = sys.argv[1], sys.argv[2]
NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG = "http://schemas.openxmlformats.org/package/2006/relationships"
CT = ('<?xml version="1.0" encoding="UTF-8"?>'
      '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
      '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
      '<Default Extension="xml" ContentType="application/xml"/>'
      '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
      '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
      '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
      '</Types>')
ROOT_RELS = (f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{PKG}">'
             f'<Relationship Id="rId1" Type="{REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>')
WB = (f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{NS}" xmlns:r="{REL}">'
      '<sheets><sheet name="Data" sheetId="1" r:id="rId1"/></sheets></workbook>')
WB_RELS = (f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{PKG}">'
           f'<Relationship Id="rId1" Type="{REL}/worksheet" Target="worksheets/sheet1.xml"/>'
           f'<Relationship Id="rId2" Type="{REL}/sharedStrings" Target="sharedStrings.xml"/>'
           '</Relationships>')
ONE_CELL = (f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{NS}"><sheetData>'
            '<row r="1"><c r="A1" t="s"><v>0</v></c></row></sheetData></worksheet>')

with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    z.writestr("[Content_Types].xml", CT)
    z.writestr("_rels/.rels", ROOT_RELS)
    z.writestr("xl/workbook.xml", WB)
    z.writestr("xl/_rels/workbook.xml.rels", WB_RELS)
    if kind in ("string", "cell"):
        z.writestr("xl/worksheets/sheet1.xml", ONE_CELL)
        size = (1 << 30) if kind == "string" else (4 << 20)
        with z.open("xl/sharedStrings.xml", "w") as f:
            f.write(f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{NS}" count="1" uniqueCount="1"><si><t>'.encode())
            chunk = b"A" * (1 << 20)
            for _ in range(size >> 20):
                f.write(chunk)
            f.write(b"</t></si></sst>")
    else:
        z.writestr("xl/sharedStrings.xml", f'<sst xmlns="{NS}" count="0" uniqueCount="0"/>')
        with z.open("xl/worksheets/sheet1.xml", "w") as f:
            f.write(f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{NS}"><sheetData>'.encode())
            chunk = b"<row><c><v>1</v></c></row>" * 100_000
            for _ in range(300):
                f.write(chunk)
            f.write(b"</sheetData></worksheet>")
