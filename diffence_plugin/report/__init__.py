"""The report: tables (``tables``), figures (``plots``), the HTML page (``html``), the paired comparison of two
audits (``compare``) and a sweep's table and plot (``sweep``), all drawn from an audit's results alone."""

from diffence_plugin.report.html import write_report
from diffence_plugin.report.tables import (format_attack_table, format_auc, format_change_table, format_seed_table,
                                           format_table, format_tpr, format_utility_table, summary_tables,
                                           training_note)

__all__ = ["format_attack_table", "format_auc", "format_change_table", "format_seed_table", "format_table",
           "format_tpr", "format_utility_table", "summary_tables", "training_note", "write_report"]
