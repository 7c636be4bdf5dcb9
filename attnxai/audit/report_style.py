"""The HTML report's style sheet: light on screen and on paper, local fonts only, each big
section on a new printed page."""

CSS = """
:root { color-scheme: light; }
body { margin: 0; background: #fff; color: #1d2730;
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
        sans-serif; }
main { max-width: 62rem; margin: 0 auto; padding: 2rem 1.5rem 4rem; }
h1 { font-size: 1.75rem; margin: 0 0 .2rem; }
h2 { font-size: 1.3rem; margin: 2.2rem 0 .6rem; padding-bottom: .2rem;
  border-bottom: 2px solid #d5dbe0; }
h3 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; }
p.meta, figcaption, .note { color: #53606b; font-size: 12.5px; }
p.lead { font-size: 1.1rem; margin: .8rem 0; }
nav ol { columns: 2; margin: 0; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 12px; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #f6f8f9;
  border: 1px solid #e1e5e8; padding: .5rem .7rem; }
.hash { overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; margin: .4rem 0 1rem; font-size: 12.5px;
  font-variant-numeric: tabular-nums; }
th, td { padding: .22rem .5rem; border-bottom: 1px solid #e1e5e8; text-align: left;
  vertical-align: top; }
th { background: #f1f4f6; font-weight: 600; }
td.num, td:first-child { white-space: nowrap; }
td.num { text-align: right; }
tr.sig td { background: #fdf1dc; }
tr.unreliable td { color: #7d8790; }
ul.verdicts { padding-left: 1.2rem; }
ul.verdicts li { margin: .35rem 0; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1.2rem;
  margin: .4rem 0; }
dl.kv dt { font-weight: 600; }
dl.kv dd { margin: 0; overflow-wrap: anywhere; }
figure { margin: 1rem 0 1.4rem; }
figure svg { max-width: 100%; height: auto; }
.thumbs { display: flex; flex-wrap: wrap; gap: .5rem; margin: .3rem 0 .8rem; }
.thumbs img { width: 96px; height: 96px; object-fit: contain; border: 1px solid #d5dbe0; }
ol.texts { margin: .2rem 0 .8rem; }
footer { margin-top: 3rem; color: #53606b; font-size: 12px; }
@page { margin: 15mm 13mm; }
@media print {
  body { font-size: 10.5pt; }
  main { max-width: none; padding: 0; }
  nav { display: none; }
  section.break { break-before: page; }
  h2, h3 { break-after: avoid; }
  figure, tr, li, dl.kv { break-inside: avoid; }
  thead { display: table-header-group; }
  th, tr.sig td { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""
