"""The self-contained HTML report of an audit, from its results alone."""

from __future__ import annotations

from diffence_plugin.audit.results import Results

import base64
import html
from pathlib import Path

from diffence_plugin.attacks.roles import CANARY_WORDS
from diffence_plugin.report.plots import plot_phi_histograms, plot_roc
from diffence_plugin.report.tables import (
    format_attack_table,
    format_change_table,
    format_seed_table,
    format_table,
    format_utility_table,
    training_note,
    verdict,
)


def _html_table(markdown: str) -> str:
    rows = [line.strip("|").split("|") for line in markdown.splitlines()
            if line.startswith("|") and not line.startswith("|---")]
    notes = [line for line in markdown.splitlines() if line and not line.startswith("|")]

    def cells(r, tag):
        return "".join(f"<{tag}>{html.escape(c.strip())}</{tag}>" for c in r)
    table = ("<table><tr>" + cells(rows[0], "th") + "</tr>"
             + "".join("<tr>" + cells(r, "td") + "</tr>" for r in rows[1:]) + "</table>")
    return table + "".join(f"<p>{html.escape(n)}</p>" for n in notes)


def _settings_table(settings: dict) -> str:
    def show(value) -> str:  # nested tables in parentheses, lists in brackets, floats to 4 significant digits
        if isinstance(value, dict):
            return ", ".join(f"{k} ({show(v)})" if isinstance(v, dict) else f"{k} {show(v)}"
                             for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(map(show, value)) + "]"
        return f"{value:.4g}" if isinstance(value, float) else str(value)
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(show(v))}</td></tr>"
                   for k, v in settings.items())
    return f"<table class='settings'>{rows}</table>"


def canary_section(results: Results) -> str:
    """The canaries' own tables (the worst case, kept out of the rows above), or nothing without canaries."""
    canaries = results.get("canaries")
    if not canaries:
        return ""
    rows = {"rows": canaries["rows"]}
    shuffled = canaries.get("kind") == "shuffled_pixels"
    kind = CANARY_WORDS[canaries.get("kind", "flipped_labels")] + (" (out-of-distribution)" if shuffled else "")
    labels = "labels, which their shuffled images no longer show" if shuffled else "flipped labels"
    return (f"<h2>The canaries: {canaries['members']} {kind} members and {canaries['nonmembers']} "
            "non-members</h2><p>The most vulnerable records stand-in (Aerni, Zhang &amp; Tramer, CCS 2024): the same "
            "attacks, fitted and chosen on the attacker's records, scored on the canaries alone. Their \"test acc\" is "
            f"the accuracy on the canary non-members' {labels}, not the model's.</p>"
            f"{_html_table(format_table(rows))}{_html_table(format_change_table(rows))}")


def write_report(results: Results, out_dir: Path) -> Path:
    """Write ``roc.png``, ``phi_histograms.png`` and a self-contained ``report.html`` to ``out_dir``."""
    out_dir = Path(out_dir)
    intervals = {name: (c["lo"], c["hi"]) for name, c in results.get("calibration", {}).items()}
    images = [plot_roc(results, out_dir / "roc.png")]
    if results.get("phi"):  # results before v2 have none
        images.append(plot_phi_histograms(results["phi"], out_dir / "phi_histograms.png", intervals))
    pictures = "".join(
        f'<figure><img alt="{p.stem}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        f"</figure>" for p in images)
    calibration = "".join(f"<li>{html.escape(name)}: phi in [{c['lo']:.3f}, {c['hi']:.3f}]</li>"
                          for name, c in results.get("calibration", {}).items())
    m = results.get("machine", {})
    settings = results.get("settings", {})
    title = "Diffence evaluation" + (f": {settings['title']}" if settings.get("title") else "")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em;max-width:1300px;font-size:14px}}
table{{border-collapse:collapse;margin:1em 0;font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 6px;
text-align:right}}td{{white-space:nowrap}}th{{background:#f4f4f4}}td:first-child{{text-align:left}}
table.settings td,table.settings th{{text-align:left;white-space:normal}}img{{max-width:100%}}li{{margin:0.3em 0}}</style></head>
<body><h1>{html.escape(title)}</h1>
<h2>Verdict</h2><ul>{''.join(f"<li>{html.escape(line)}</li>" for line in verdict(results))}</ul>
<p>The intervals cover the sampling of the evaluation records, for one draw of the defense's and the attacker's
seeds.</p>
<p>95% bootstrap intervals in brackets. The chosen attack is the one with the highest AUC on the attacker's own
held-out records; it is then measured on the evaluation records. "n/a": the FPR is below the resolution
1 / non-members.</p>
{'<p><strong>' + html.escape(training_note(results)) + '</strong></p>' if training_note(results) else ''}
<h2>Results</h2>{_html_table(format_table(results))}
{'<h2>Utility of the released vectors</h2>' + _html_table(format_utility_table(results)) if format_utility_table(results) else ''}
<h2>Change from the undefended model, and the defense's own randomness</h2>{_html_table(format_change_table(results))}
{'<h2>The defense seed</h2>' + _html_table(format_seed_table(results)) if results.get('defense_seeds') else ''}
<h2>Every attack (AUC)</h2>{_html_table(format_attack_table(results))}
{canary_section(results)}
<h2>Curves and score distributions</h2>{pictures}
<h2>Calibration</h2><ul>{calibration}</ul>
<h2>Settings</h2>{_settings_table(results.get('settings', {}))}
<h2>Machine</h2>{_settings_table({k: v for k, v in m.items()})}
<p>Run time: {results.get('seconds', 0):.0f} s.</p></body></html>"""
    path = out_dir / "report.html"
    path.write_text(page)
    return path
