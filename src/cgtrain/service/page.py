"""The jobs page: server-rendered HTML, inline CSS, no scripts, nothing fetched from elsewhere."""
from __future__ import annotations

from html import escape

HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                      "frame-ancestors 'none'",
           "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}th,td{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}
.queued{color:#666}.running{color:#06c}.succeeded{color:#080}.failed{color:#c00}.cancelled{color:#a60}
.bar{display:inline-block;width:8em;height:.7em;background:#eee;vertical-align:middle}
.bar span{display:block;height:100%;background:#06c}
"""


def _doc(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>")


def sign_in(problem: str | None = None) -> str:
    note = f"<p class=failed>{escape(problem)}</p>" if problem else ""
    return _doc("cgtrain jobs", f"""<h1>cgtrain jobs</h1>{note}
<form method=post action=/login><label>API token <input type=password name=token autocomplete=off></label>
<button type=submit>Sign in</button></form>
<p>Make a token with <code>cgtrain token create --tenant NAME --db URI</code>. API: <a href=/docs>/docs</a></p>""")


def _progress(view: dict) -> str:
    p = view.get("progress") or {}
    done, total = p.get("trials_done"), p.get("trials_total")
    if not total:
        return "-"
    width = max(0, min(100, round(100 * (done or 0) / total)))
    return f"<span class=bar><span style='width:{width}%'></span></span> {done}/{total} trials"


def _best(view: dict) -> str:
    m, p = view.get("metrics") or {}, view.get("progress") or {}
    cv = m.get("cv") if isinstance(m.get("cv"), dict) else {}
    metric = cv.get("metric") or p.get("metric")
    value = cv.get("mean", p.get("best"))
    if not isinstance(value, (int, float)):
        return "-"
    test = (m.get("test") or {}).get(metric) if metric else None
    text = f"{escape(str(metric or ''))} {value:.4f} (CV)"
    return text + (f", {test:.4f} (test)" if isinstance(test, (int, float)) else "")


def jobs(tenant: str, views: list[dict]) -> str:
    rows = []
    for v in views:
        report = (f"<a href='/v1/jobs/{v['id']}/artifacts/report.html'>report</a> · "
                  f"<a href='/v1/jobs/{v['id']}/artifacts/metrics.json'>metrics</a>"
                  if v["state"] == "succeeded" else "")
        error = f"<br><small>{escape(v['error'])}</small>" if v.get("error") else ""
        rows.append(f"<tr id=job-{v['id']}><td>{v['id']}</td><td>{escape(str(v.get('name') or ''))}</td>"
                    f"<td class={escape(v['state'])}>{escape(v['state'])}{error}</td><td>{_progress(v)}</td>"
                    f"<td>{_best(v)}</td><td>{escape(v['created_at'] or '')}</td><td>{report}</td></tr>")
    table = ("<table><thead><tr><th>job</th><th>name</th><th>state</th><th>progress</th><th>best metric</th>"
             "<th>created (UTC)</th><th>records</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
             if rows else "<p>No jobs yet: POST /v1/jobs.</p>")
    return _doc("cgtrain jobs", f"""<h1>cgtrain jobs</h1><p>tenant <b>{escape(tenant)}</b> ·
<a href=/>refresh</a> · <a href=/docs>API</a></p>{table}
<form method=post action=/logout><button type=submit>Sign out</button></form>""")
