"""`report.html`: one self-contained page (table, plots, per-scheme notes) that opens in any browser.

Why plain HTML with relative links: a CI artefact folder is browsed as files, without a server, so the page
uses no script and refers only to files in the output folder (checked by the tests).
"""

from __future__ import annotations

import html

from edge_lowrank.pipeline.report import data_sentence, selection_sentence, table_rows

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
td:first-child,td:nth-child(2),th{text-align:left}tr.best{background:#e8f6e8}img{max-width:100%;border:1px solid #ddd}
.fail{color:#a00}.ok{color:#070}code{background:#f4f4f4;padding:1px 3px}"""


def render_html(report: dict) -> str:
    e = html.escape
    head, rows = table_rows(report)
    best = (report.get("best") or {}).get("id")
    out = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
           f"<title>edge-lowrank report: {e(report['model']['path'])}</title><style>{_CSS}</style></head><body>",
           f"<h1>edge-lowrank report</h1><p>Model <code>{e(report['model']['path'])}</code>: "
           f"{report['model']['params']:,} parameters, {report['model']['macs'] / 1e6:.2f} M MACs per image. "
           f"{e(data_sentence(report))}</p>"]
    notes = report["data"].get("notes") or []
    if notes:
        out.append("<ul>" + "".join(f"<li>Data: {e(n)}.</li>" for n in notes) + "</ul>")
    g = report["gates"]
    cls = "ok" if g["passed"] else "fail"
    out.append(f"<p class='{cls}'><b>Gates</b>: "
               f"{e(', '.join(f'{k}={v:g}' for k, v in g['gates'].items()) or 'none')}. {e(g['message'])}.</p>")
    out.append(f"<p><b>Selection</b>: {e(selection_sentence(report))}</p>")
    out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>")
    for v, r in zip(report["variants"], rows):
        tflite = v["files"].get("tflite")
        cells = [f"<a href='{e(tflite)}'>{e(r[0])}</a>" if tflite else e(r[0])] + [e(c) for c in r[1:]]
        out.append(f"<tr{' class=best' if v['id'] == best else ''}>" + "".join(f"<td>{c}</td>" for c in cells)
                   + "</tr>")
    out.append("</table>")
    if not report["arm"]["available"]:
        out.append(f"<p>ARM: not measured ({e(report['arm']['reason'] or '')}).</p>")
    notes = [s for s in report["schemes"] if s["status"] != "ok"]
    if notes:
        out.append("<ul>" + "".join(f"<li>{e(s['scheme'])}: {e(s['status'])}: {e(s['message'] or '')}</li>"
                                    for s in notes) + "</ul>")
    files = report["files"]
    for key, title in (("pareto_png", "Accuracy vs latency"), ("layers_png", "Per-layer MACs and ranks")):
        if key in files:
            out.append(f"<h2>{title}</h2><img src='{e(files[key])}' alt='{title}'>")
    links = [(k, files[k]) for k in ("report_json", "report_md", "best_tflite", "best_c_source") if k in files]
    out.append("<h2>Files</h2><ul>" + "".join(f"<li><a href='{e(p)}'>{e(p)}</a></li>" for _, p in links) + "</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
