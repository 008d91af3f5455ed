"""Reports of cohort runs: :mod:`.qa_report` writes an HTML page with overlay pictures per case,
sortable by score, worst cases first.

Example:
    >>> from HNTumorSegLib.report.qa_report import QACase, write_qa_report
"""
